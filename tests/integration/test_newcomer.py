"""The first hour, as a newcomer types it, with every first-party plugin installed: checking
configs, the docs' examples, ``doctor``, ``status`` and the simulator, each a real process on
loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from ..docker_engine import IMAGE
from .support import (
    GLEITZEIT,
    REPO,
    fenced_blocks,
    gateway,
    gleitzeit,
    simulator,
    user_env,
)

DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(REPO.glob("plugins/*/README.md")),
    *sorted(REPO.glob("contrib/*/README.md")),
    *sorted(REPO.glob("examples/*/README.md")),
]
_INSTALLED = re.compile(r"; installed [a-z ]+: [^;]*")


def _marked_block(path: Path, marker: str, language: str) -> tuple[str, str]:
    """The ``language`` block right after ``<!-- marker: NAME -->``, and NAME."""
    text = path.read_text(encoding="utf-8")
    found = re.search(
        rf"^<!-- {marker}: (.+?) -->\n```{language}\n(.*?)^```$", text, flags=re.S | re.M
    )
    assert found is not None, f"{path.name} has no {marker} block"
    return found.group(1), found.group(2)


def _comparable(line: str) -> str:
    """A message line without the list of installed names (it depends on what is installed)."""
    return _INSTALLED.sub("; installed ...", line)


def test_a_config_with_every_kind_of_problem_is_reported_whole_in_one_run(
    tmp_path: Path,
) -> None:
    """docs/configuration.md's broken.toml (a type error, a range error, an unknown key, an
    unknown section, an unknown name, a bad URL, a duplicate id and a reference to a missing
    hub) is reported whole by one ``config check``: exit 2, one line per problem, all in the
    same ``gleitzeit: FILE: `` form, exactly as the doc shows them."""
    name, broken = _marked_block(REPO / "docs" / "configuration.md", "config", "toml")
    (tmp_path / name).write_text(broken, encoding="utf-8")
    command, shown = _marked_block(REPO / "docs" / "configuration.md", "output", "text")
    result = gleitzeit(tmp_path, *command.split()[1:])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"gleitzeit: {name}: ") for line in lines), result.stderr
    assert [_comparable(line) for line in lines] == [
        _comparable(line) for line in shown.splitlines()
    ]
    kinds = {
        "type": 'expected a number of seconds > 0, got "60s"',
        "range": "expected a port between 0 and 65535, got 70000",
        "unknown key": 'hubs.llm.retry: unknown key; did you mean "retries"?',
        "unknown section": 'featurs: unknown section; did you mean "features"?',
        "unknown name": "unknown strategy 'p2k'",
        "URL": 'got "not a url"',
        "duplicate id": "duplicate id 'gpu'",
        "reference": "no hub named 'lm'",
    }
    for kind, text in kinds.items():
        assert sum(text in line for line in lines) == 1, kind
    assert "Traceback" not in result.stderr


def test_every_toml_block_of_the_docs_is_valid(tmp_path: Path) -> None:
    """Every ``toml`` block of the README, docs/ and the plugins' READMEs parses; each that is
    a Gleitzeit config passes ``gleitzeit config check`` (the broken example excepted, which
    the test above runs)."""
    _, broken = _marked_block(REPO / "docs" / "configuration.md", "config", "toml")
    checked = 0
    for doc in DOCS:
        for index, block in enumerate(fenced_blocks(doc, "toml")):
            parsed = tomllib.loads(block)  # every block, pyproject snippets too
            if block == broken or "project" in parsed:
                continue
            path = tmp_path / f"{doc.parent.name}-{doc.stem}-{index}.toml"
            path.write_text(block, encoding="utf-8")
            result = gleitzeit(tmp_path, "config", "check", str(path))
            assert result.returncode == 0, f"{doc}: block {index}:\n{result.stderr}"
            checked += 1
    assert checked >= 8


def test_the_example_config_is_valid_and_matches_config_example(tmp_path: Path) -> None:
    """examples/gleitzeit.toml passes ``config check``, and ``config example`` prints it."""
    example = REPO / "examples" / "gleitzeit.toml"
    assert gleitzeit(tmp_path, "config", "check", str(example)).returncode == 0
    printed = gleitzeit(tmp_path, "config", "example")
    assert printed.stdout == example.read_text(encoding="utf-8")
    (tmp_path / "gleitzeit.toml").write_text(printed.stdout, encoding="utf-8")
    assert gleitzeit(tmp_path, "config", "check", "gleitzeit.toml").returncode == 0


def _command_words(line: str) -> list[str]:
    """``gleitzeit plugins disable NAME ...`` -> ``["plugins", "disable"]``."""
    words = line.split("#", 1)[0].split()
    start = words.index("gleitzeit") + 1 if "gleitzeit" in words else len(words)
    out = []
    for word in words[start:]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        out.append(word)
    return out


def test_every_command_the_docs_show_exists(tmp_path: Path) -> None:
    """Each ``gleitzeit ...`` line of the README's and docs/cli.md's command blocks names a
    command that exists (``gleitzeit WORDS -h`` exits 0), plugin commands included."""
    seen = set()
    for doc in (REPO / "README.md", REPO / "docs" / "cli.md"):
        for block in fenced_blocks(doc, "bash"):
            for line in block.splitlines():
                words = _command_words(line)
                if not words or tuple(words) in seen:
                    continue
                seen.add(tuple(words))
                result = gleitzeit(tmp_path, *words, "-h")
                assert result.returncode == 0, f"{line}: {result.stderr}"
    assert {("sim", "ollama"), ("migrate-config",), ("config", "check"), ("doctor",)} <= seen


@pytest.mark.docker
def test_the_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    """The README's Python block, saved as a file and run with ``python`` beside the example
    config (its Ollama URL pointed at a simulator), prints the chat reply and 3."""
    (block,) = fenced_blocks(REPO / "README.md", "python")
    (tmp_path / "quickstart.py").write_text(block, encoding="utf-8")
    with simulator(tmp_path, "llama3.2") as url:
        config = (REPO / "examples" / "gleitzeit.toml").read_text(encoding="utf-8")
        assert "http://127.0.0.1:11434" in config
        assert '[hubs.sandbox]\nkind = "docker"\n' in config
        config = config.replace("http://127.0.0.1:11434", url).replace(
            '[hubs.sandbox]\nkind = "docker"\n',
            f'[hubs.sandbox]\nkind = "docker"\ndefault_image = "{IMAGE}"  # no registry here\n',
        )
        (tmp_path / "gleitzeit.toml").write_text(config, encoding="utf-8")
        ran = subprocess.run(
            [sys.executable, "quickstart.py"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=user_env(tmp_path),
            timeout=300,
            check=False,
        )
    assert ran.returncode == 0, ran.stderr
    output = ran.stdout.splitlines()
    assert output[-1] == "3"
    assert output[0].strip()  # the simulator's reply


def test_sim_ollama_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """``sim ollama --port P`` where something listens already: one line that says so and
    what to do, exit 1, no traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = gleitzeit(tmp_path, "sim", "ollama", "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gleitzeit: sim ollama: port")
    assert "already in use" in lines[0]
    assert "--port" in lines[0]


def _config(tmp_path: Path, urls: list[str], port: int) -> Path:
    text = f'[gateway]\nport = {port}\n\n[hubs.llm]\nkind = "ollama"\ndiscovery = ["static"]\n'
    for index, url in enumerate(urls):
        text += f'\n[[hubs.llm.resources]]\nid = "instance-{index}"\nurl = "{url}"\n'
    path = tmp_path / "g.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_doctor_names_each_backend_and_what_to_do(tmp_path: Path) -> None:
    """``doctor`` lists the plugins with versions, the config, the gateway port, and each
    Ollama instance: the simulator answers, a closed port does not and gets a fix line; exit
    1. With only the simulator, exit 0."""
    dead = f"http://127.0.0.1:{_free_port()}"
    with simulator(tmp_path, "llama3.2") as url:
        config = _config(tmp_path, [url, dead], _free_port())
        result = gleitzeit(tmp_path, "doctor", "--config", str(config), "--timeout", "5")
        assert result.returncode == 1, result.stdout + result.stderr
        out = result.stdout
        assert re.search(r"ok +ollama \(gleitzeit-ollama \d", out)
        assert f"{config} is valid" in out
        assert "is free for `gleitzeit serve`" in out
        assert re.search(rf"ok +hub llm \(ollama\): instance-0 at {re.escape(url)} answers", out)
        failed = out[out.index(f"instance-1 at {dead}") :]
        assert "fix: start the server" in failed.splitlines()[1]
        good = _config(tmp_path, [url], _free_port())
        healthy = gleitzeit(tmp_path, "doctor", "--config", str(good), "--timeout", "5")
        assert healthy.returncode == 0, healthy.stdout
        assert "all good" in healthy.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[hubs.llm]\nkind = 3\n", encoding="utf-8")
    bad = gleitzeit(tmp_path, "doctor", "--config", str(broken))
    assert bad.returncode == 1
    assert "hubs.llm.kind: expected a string, got 3" in bad.stdout


def test_status_finds_the_gateway_of_the_config_and_fits_80_columns(tmp_path: Path) -> None:
    """``status --config`` and ``GLEITZEIT_CONFIG`` ask the gateway on the config's port; the
    table fits 80 columns on a pipe, ``--wide`` adds columns, and ``--watch`` on a pipe prints
    one snapshot after another."""
    with simulator(tmp_path, "llama3.2") as url:
        config = _config(tmp_path, [url], _free_port())
        with gateway(tmp_path, config) as served:
            port = str(tomllib.loads(config.read_text())["gateway"]["port"])
            assert served.endswith(port)
            by_option = gleitzeit(tmp_path, "status", "--config", str(config))
            assert by_option.returncode == 0, by_option.stderr
            assert "instance-0" in by_option.stdout
            assert max(len(line) for line in by_option.stdout.splitlines()) <= 80
            hub_table = by_option.stdout.split("\npaths", 1)[0]  # plugin sections follow
            assert "p99" not in hub_table
            env = user_env(tmp_path, GLEITZEIT_CONFIG=str(config))
            by_env = gleitzeit(tmp_path, "status", "--json", env=env)
            assert by_env.returncode == 0, by_env.stderr
            assert json.loads(by_env.stdout)["hubs"][0]["name"] == "llm"
            wide = gleitzeit(tmp_path, "status", "--wide", "--port", port)
            assert "p99" in wide.stdout
            watch = subprocess.Popen(
                [GLEITZEIT, "status", "--config", str(config), "--watch", "--interval", "0.2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=user_env(tmp_path),
            )
            try:
                assert watch.stdout is not None
                snapshots = 0
                deadline = time.monotonic() + 60
                while snapshots < 2 and time.monotonic() < deadline:
                    if watch.stdout.readline().startswith("-- http://"):
                        snapshots += 1
                assert snapshots == 2
            finally:
                watch.kill()
                watch.communicate()
    nobody = gleitzeit(tmp_path, "status", "--port", str(_free_port()))
    assert nobody.returncode == 1
    assert nobody.stderr.startswith("gleitzeit: cannot reach a gateway")
    assert "Traceback" not in nobody.stderr


def test_migrate_config_writes_a_file_that_config_check_accepts(tmp_path: Path) -> None:
    """``migrate-config old.yaml -o new.toml`` writes a config ``config check`` accepts, and
    says to check it that way."""
    (tmp_path / "old.yaml").write_text(
        "providers:\n  ollama:\n    endpoint: http://127.0.0.1:11434\n"
        "    default_models: [llama3.2]\n",
        encoding="utf-8",
    )
    result = gleitzeit(tmp_path, "migrate-config", "old.yaml", "-o", "new.toml", "--no-env")
    assert result.returncode == 0, result.stderr
    assert "gleitzeit config check new.toml" in result.stdout
    assert gleitzeit(tmp_path, "config", "check", "new.toml").returncode == 0
    shutil.rmtree(tmp_path / "xdg", ignore_errors=True)


@pytest.mark.docker
def test_doctor_probes_each_docker_engine(tmp_path: Path) -> None:
    """``doctor`` says the engine of DOCKER_HOST answers and a closed loopback port does not,
    with a fix line; exit 1."""
    config = tmp_path / "d.toml"
    config.write_text(
        f'[gateway]\nport = {_free_port()}\n[hubs.sandbox]\nkind = "docker"\n'
        f'[hubs.dead]\nkind = "docker"\nengines = ["tcp://127.0.0.1:{_free_port()}"]\n',
        encoding="utf-8",
    )
    env = user_env(tmp_path)
    result = gleitzeit(tmp_path, "doctor", "--config", str(config), "--timeout", "10", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"ok +hub sandbox \(docker\): .* answers", result.stdout)
    failed = result.stdout[result.stdout.index("FAIL  hub dead (docker)") :].splitlines()
    assert "engine unavailable" in failed[0]
    assert failed[1].strip().startswith("fix: ")


def test_an_unreachable_docker_engine_is_one_line(tmp_path: Path) -> None:
    """``docker pull`` against an engine that does not answer (a closed loopback port): one
    line naming the engine and what to do, exit 1, no traceback."""
    engine = f"tcp://127.0.0.1:{_free_port()}"
    result = gleitzeit(tmp_path, "docker", "pull", "localpython:3", "--engine", engine)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"gleitzeit: engine unavailable: {engine}")
    assert "DOCKER_HOST" in lines[0]
    assert ".ci/" not in lines[0]


def test_the_reported_message_defects_read_right(tmp_path: Path) -> None:
    """The lines the first-hour report quoted: a breaker of a disabled plugin names what
    disabled it (no "pip install"), ``max_in_flight = 0`` states the bound, names are plural
    right, and ``retry`` suggests ``retries``."""
    config = tmp_path / "g.toml"
    config.write_text(
        '[hubs.llm]\nkind = "ollama"\nretry = 2\nbreaker = { kind = "window" }\n'
        'strategy = { kind = "sticky", max_in_flight = 0 }\n'
        '[hubs.other]\nkind = "ollama"\nstrategy = "fastest"\n',
        encoding="utf-8",
    )
    env = user_env(tmp_path, GLEITZEIT_DISABLED_PLUGINS="breaker-window")
    result = gleitzeit(tmp_path, "config", "check", str(config), env=env)
    assert result.returncode == 2
    err = result.stderr
    breaker = next(line for line in err.splitlines() if "breaker.kind" in line)
    assert "installed but disabled (GLEITZEIT_DISABLED_PLUGINS)" in breaker
    assert "pip install" not in breaker
    assert "hubs.llm.strategy.max_in_flight: expected a number >= 1, got 0" in err
    assert 'hubs.llm.retry: unknown key; did you mean "retries"?' in err
    assert "installed strategies:" in err
    assert "strategys" not in err
