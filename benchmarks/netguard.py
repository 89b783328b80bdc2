"""The benchmarks' network guard: nothing but loopback, for LiteLLM in this process and for
LiteLLM's proxy server in its own (standard library only: it runs in the proxy's venv too).

``install()`` sets the environment that keeps LiteLLM off the network (its bundled model-cost
map instead of a fetch, no ``.env`` file, no proxy variables, no telemetry, Hugging Face
offline) and adds an audit hook that refuses any connection or name lookup outside the
loopback range, counting each in ``BLOCKED`` (and, with ``log``, one JSON line per attempt
in that file, for a child process to report to its parent).

As a program it runs LiteLLM's proxy server behind the guard::

    python benchmarks/netguard.py --log blocked.jsonl -- --config proxy.yaml --port 4000

(everything after ``--`` goes to ``litellm``'s own command line).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import threading
import traceback
from typing import Any

BLOCKED: list[dict[str, Any]] = []
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
# what keeps LiteLLM (library and proxy) off the network, before it is imported
QUIET_ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # bundled cost map, no fetch at import
    "LITELLM_MODE": "PRODUCTION",  # no load_dotenv() of a stray .env at import
    "LITELLM_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",  # tokenizers from the package, never downloaded
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_PROXY": "127.0.0.1,localhost,::1",
    "no_proxy": "127.0.0.1,localhost,::1",
}
_log_path: str | None = None
_installed = False


def quiet_environment(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the proxy variables removed and ``QUIET_ENVIRONMENT`` set."""
    quiet = {k: v for k, v in environ.items() if k not in _PROXY_VARIABLES}
    return quiet | QUIET_ENVIRONMENT


def is_local(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1
    return address.is_loopback


def _audit(event: str, args: tuple[Any, ...]) -> None:
    host: Any = None
    if event == "socket.getaddrinfo" or event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if not isinstance(address, tuple):
            return  # a Unix socket
        host = address[0]
    else:
        return
    if is_local(host):
        return
    where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack(limit=12)[:-1]]
    attempt = {
        "event": event,
        "host": str(host),
        "thread": threading.current_thread().name,
        "stack": where[-6:],
    }
    BLOCKED.append(attempt)
    if _log_path is not None:
        with open(_log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(attempt) + "\n")
    raise PermissionError(f"benchmark guard: no traffic outside loopback ({event} {host})")


def install(log: str | None = None) -> None:
    """Quiet LiteLLM's environment and refuse every address outside loopback, from now on."""
    global _log_path, _installed
    for name in _PROXY_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(QUIET_ENVIRONMENT)
    _log_path = log
    if not _installed:
        sys.addaudithook(_audit)  # cannot be removed: for the rest of the process
        _installed = True


def remote_peers(pid: int) -> list[str]:
    """The remote addresses of ``pid``'s TCP connections (``/proc``): a second check, after
    the fact, that a process talked to loopback only."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    peers = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[9] not in inodes:
                continue
            address, _, port = fields[2].partition(":")
            if address.strip("0") == "":
                continue  # a listening socket has no peer
            raw = bytes.fromhex(address)
            if width == 8:
                host = str(ipaddress.IPv4Address(raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                host = str(ipaddress.IPv6Address(words))
            peers.append(f"{host}:{int(port, 16)}")
    return peers


def main() -> None:
    argv = sys.argv[1:]
    log = None
    if argv[:1] == ["--log"]:
        log, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    install(log)
    from litellm.proxy.proxy_cli import run_server

    sys.argv = ["litellm", *argv]
    run_server()


if __name__ == "__main__":
    main()
