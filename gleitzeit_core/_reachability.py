"""Does anything answer at a URL? One bounded connection attempt, for the checks a newcomer
relies on: a config-less start adding only the hubs whose backend answers, and
``gleitzeit doctor``."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

__all__ = ["MIGRATE_SYSCTL", "connect_problem", "migrate_problem", "port_problem"]


def connect_problem(url: str, timeout: float = 1.0) -> str | None:
    """``None`` when something accepts a connection at ``url`` (http, https, tcp or unix)
    within ``timeout`` seconds, else what went wrong, in words."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(parts.path)
            return None
        default = {"https": 443, "http": 80, "tcp": 2375}.get(parts.scheme)
        if parts.hostname is None or (parts.port or default) is None:
            return f"cannot tell where {url!r} points"
        with socket.create_connection((parts.hostname, parts.port or default), timeout=timeout):
            return None
    except FileNotFoundError:
        return f"no socket at {parts.path}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def port_problem(host: str, port: int, *, reuse_port: bool = False) -> str | None:
    """``None`` when ``host:port`` is free to listen on, else why not (in use, no such
    address, not allowed). ``reuse_port``: a port held by processes that set
    ``SO_REUSEPORT`` too (other replicas, same user) counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already in use"
        if exc.errno == errno.EACCES:
            return f"not allowed to listen on {host}:{port} (ports below 1024 need root)"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


def migrate_problem() -> str | None:
    """Why a replica sharing its port (``reuse_port``) may reset connections when it stops,
    or ``None``: Linux resets the connections queued on a closing ``SO_REUSEPORT`` socket
    unless ``net.ipv4.tcp_migrate_req`` is 1 (Linux >= 5.14), which hands them to another
    replica."""
    try:
        with open(MIGRATE_SYSCTL, encoding="ascii") as file:
            value = file.read().strip()
    except OSError:
        return (
            "reuse_port: this kernel has no net.ipv4.tcp_migrate_req (Linux >= 5.14): connections "
            "queued at a replica that stops are reset; see docs/scale-out.md"
        )
    if value != "1":
        return (
            "reuse_port: net.ipv4.tcp_migrate_req is 0, so connections queued at a replica that "
            "stops are reset; run `sysctl -w net.ipv4.tcp_migrate_req=1` (docs/scale-out.md)"
        )
    return None
