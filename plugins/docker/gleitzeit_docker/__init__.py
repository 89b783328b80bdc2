"""Gleitzeit Docker plugin: hardened, pooled Docker sandboxes for untrusted Python code.

The engine-facing layer is split into small modules, each with an explicit ``__all__``:

- ``gleitzeit_docker.errors``: the exception types callers catch.
- ``gleitzeit_docker.profiles``: ``Profile`` (one hardened container recipe) and the built-ins.
- ``gleitzeit_docker.engine``: ``Engine``, one Docker Engine API endpoint with timeouts.
- ``gleitzeit_docker.runner`` / ``runner_main``: the resident in-container job runner.
- ``gleitzeit_docker.execution``: run one job (runner, warm exec or fresh container).
- ``gleitzeit_docker.pool``: ``WarmPool``, warm containers keyed by their full config.

This module deliberately imports nothing so that importing the package stays cheap.
"""
