"""Profiles, limits, job validation and the runner source: pure host-side tests (no engine)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from gleitzeit_docker.errors import JobError, LimitError, ProfileError
from gleitzeit_docker.execution import Job, info
from gleitzeit_docker.profile_fields import Mount, format_size, parse_cpus, parse_size
from gleitzeit_docker.profiles import DEFAULT_DATASCIENCE_IMAGE, Profile, load_profiles
from gleitzeit_docker.runner import runner_source
from gleitzeit_docker.validation import Validator


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256m", 256 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1.5g", 3 << 29),
     ("64MiB", 64 << 20), (4096, 4096), ("100", 100)],
)  # fmt: skip
def test_parse_size_accepts_docker_style_sizes(text: str | int, expected: int) -> None:
    """Sizes use Docker's binary units and accept ints as bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12x", "", "-5m", "m", True, 0])
def test_parse_size_rejects_garbage_with_a_clear_error(bad: Any) -> None:
    """Unparseable sizes raise ProfileError naming the field and an example."""
    with pytest.raises(ProfileError, match="memory"):
        parse_size(bad, "memory")


def test_parse_cpus_and_format_size() -> None:
    """CPU counts parse from numbers and strings; out-of-range values are refused."""
    assert parse_cpus("0.5") == 0.5
    assert parse_cpus(2) == 2.0
    with pytest.raises(ProfileError, match="CPU count"):
        parse_cpus("lots")
    with pytest.raises(ProfileError, match="between"):
        parse_cpus(0)
    assert format_size(256 << 20) == "256m"
    assert format_size(1 << 30) == "1g"


def test_builtin_profiles_have_the_documented_limits() -> None:
    """sandboxed/minimal/datascience carry the old security levels' limits."""
    ps = load_profiles()
    sandboxed, minimal, ds = ps.get("sandboxed"), ps.get("minimal"), ps.get("datascience")
    assert (sandboxed.memory, sandboxed.cpus, sandboxed.pids_limit) == (256 << 20, 1.0, 64)
    assert (minimal.memory, minimal.cpus, minimal.pids_limit) == (128 << 20, 0.5, 32)
    assert ds.image == DEFAULT_DATASCIENCE_IMAGE
    assert ds.memory > sandboxed.memory
    assert load_profiles({"datascience_image": "my/ds:1"}).get("datascience").image == "my/ds:1"


def test_sandboxed_container_config_is_hardened() -> None:
    """The create config drops network, caps, privileges and bounds every resource."""
    cfg = load_profiles().get("sandboxed").container_config({"a": "b"}, ["python3"])
    host = cfg["HostConfig"]
    assert cfg["NetworkDisabled"] is True
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    # The container's root runs only the runner, with just what it needs to drop each job
    # to the profile's user (tests/security/test_sandbox_isolation.py: jobs get no caps).
    assert cfg["User"] == "0:0"
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETPCAP", "SETUID"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 64
    assert host["Memory"] == host["MemorySwap"] == 256 << 20
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert host["Binds"] == []
    assert {u["Name"] for u in host["Ulimits"]} >= {"nofile", "fsize"}
    assert host["LogConfig"]["Type"] == "none"
    tmp = host["Tmpfs"]["/tmp"]
    assert all(opt in tmp for opt in ("noexec", "nosuid", "nodev", "size="))
    assert cfg["Labels"] == {"a": "b"}


def test_trusted_needs_allow_trusted() -> None:
    """Network access is refused unless the config says allow_trusted = True."""
    with pytest.raises(ProfileError, match="allow_trusted"):
        load_profiles().get("trusted")
    custom = load_profiles({"profiles": {"net": {"base": "sandboxed", "network": "bridge"}}})
    with pytest.raises(ProfileError, match="allow_trusted"):
        custom.get("net")
    with pytest.raises(ProfileError, match="allow_trusted"):
        Profile(name="handmade", network="host").container_config({})
    trusted = load_profiles({"allow_trusted": True}).get("trusted")
    cfg = trusted.container_config({})
    assert cfg["HostConfig"]["NetworkMode"] != "none"
    assert cfg["NetworkDisabled"] is False
    assert cfg["HostConfig"]["CapDrop"] == ["ALL"]  # the rest of the hardening stays


def test_overrides_and_unknown_keys() -> None:
    """Any built-in field can be overridden; typos in the config fail loudly."""
    ps = load_profiles({"profiles": {"sandboxed": {"memory": "512m", "pids_limit": 100}}})
    assert ps.get("sandboxed").memory == 512 << 20
    assert ps.get("sandboxed").pids_limit == 100
    with pytest.raises(ProfileError, match="unknown fields"):
        load_profiles({"profiles": {"sandboxed": {"memroy": "1g"}}})
    with pytest.raises(ProfileError, match="unknown docker config keys"):
        load_profiles({"alow_trusted": True})
    with pytest.raises(ProfileError, match="unknown docker profile"):
        load_profiles().get("nope")
    with pytest.raises(ProfileError, match="root"):
        Profile(name="r", user="0:0")


def test_requests_may_tighten_but_never_loosen() -> None:
    """restrict() lowers limits; asking for more raises LimitError (no silent clamping)."""
    base = load_profiles().get("sandboxed")
    tight = base.restrict(memory="128m", cpus=0.5, pids_limit=16, timeout=5, output_limit="1k")
    assert (tight.memory, tight.cpus, tight.pids_limit) == (128 << 20, 0.5, 16)
    assert (tight.timeout, tight.output_limit) == (5.0, 1024)
    for kwargs in ({"memory": "1g"}, {"cpus": 2}, {"pids_limit": 65}, {"timeout": 61}):
        with pytest.raises(LimitError, match="may only tighten"):
            base.restrict(**kwargs)
    with pytest.raises(LimitError, match=r"memory 1g .* at most 256m"):
        base.restrict(memory="1g")


def test_pool_key_covers_the_full_container_config() -> None:
    """Same image, different limits/user/env/mounts -> different keys; stable otherwise."""
    base = Profile(name="a", image="img:1")
    assert base.pool_key() == Profile(name="other-name", image="img:1").pool_key()
    assert base.pool_key() == attrs.evolve(base, timeout=5).pool_key()  # per-run field
    variants = [
        attrs.evolve(base, memory="128m"),
        attrs.evolve(base, cpus=0.5),
        attrs.evolve(base, pids_limit=32),
        attrs.evolve(base, user="1000:1000"),
        attrs.evolve(base, env={"A": "1"}),
        attrs.evolve(base, mounts=["/srv/data:/data"]),
        attrs.evolve(base, image="img:2"),
    ]
    keys = {v.pool_key() for v in variants}
    assert len(keys) == len(variants)
    assert base.pool_key() not in keys


def test_mounts_are_read_only_by_default_and_guarded() -> None:
    """Host paths appear only when named; read-only unless 'rw'; dangerous ones refused."""
    p = Profile(name="m", mounts=["/srv/data:/data", "/srv/out:/out:rw"])
    binds = p.container_config({})["HostConfig"]["Binds"]
    assert binds == ["/srv/data:/data:ro", "/srv/out:/out:rw"]
    for spec in ("/:/host", "/var/run/docker.sock:/sock", "/srv:/tmp", "/srv:/proc/x", "rel:/x"):
        with pytest.raises(ProfileError):
            Mount.parse(spec)


def test_job_validation() -> None:
    """Jobs need code xor file; args must be JSON; file names stay inside the job dir."""
    with pytest.raises(JobError, match="exactly one"):
        Job()
    with pytest.raises(JobError, match="exactly one"):
        Job(code="1", file="a.py", files={"a.py": "1"})
    with pytest.raises(JobError, match="not among"):
        Job(file="main.py")
    with pytest.raises(JobError, match="JSON"):
        Job(code="1", args={"x": object()})
    for name in ("../escape.py", "/etc/passwd", "."):
        with pytest.raises(JobError, match="relative path"):
            Job(code="1", files={name: "x"})
    big = Job(code="1", files={"big.bin": b"\0" * (40 << 20)})
    with pytest.raises(JobError, match="more than half"):
        big.request(load_profiles().get("sandboxed"))


async def test_validate_compiles_without_running() -> None:
    """Validator reports syntax errors with position and never executes the code."""
    validator = Validator()
    assert (await validator.validate("x = 1\nprint(x)"))["valid"] is True
    bad = await validator.validate("def f(:\n  pass")
    assert bad["valid"] is False
    assert bad["line"] == 1
    assert "SyntaxError" in bad["error"]
    ran = await validator.validate("raise SystemExit(3)")  # compiled, not run
    assert ran == {"valid": True, "error": None, "line": None, "column": None}


def test_info_lists_profile_and_limits() -> None:
    """info() combines the runner's hello with the profile's limits."""
    sandboxed = load_profiles().get("sandboxed")
    out = info(sandboxed, {"python": "3.11.2", "platform": "Linux-x"})
    assert out["python_version"] == "3.11.2"
    assert out["profile"] == "sandboxed"
    assert out["limits"]["memory"] == "256m"
    assert out["pool_key"] == sandboxed.pool_key()


def test_runner_source_is_one_valid_script() -> None:
    """The concatenated runner compiles and carries exactly one __future__ import, first."""
    source = runner_source()
    compile(source, "<runner>", "exec")
    assert source.startswith("from __future__ import annotations\n")
    assert source.count("from __future__ import annotations") == 1
    assert len(source.encode()) < 100_000  # well below the 128 KiB per-argument limit
