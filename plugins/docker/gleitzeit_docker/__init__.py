"""Gleitzeit Docker plugin: hardened, pooled Docker sandboxes for untrusted Python code.

The engine-facing layer is split into small modules, each with an explicit ``__all__``:

- ``errors``: the exception types callers catch (each also a built-in: ConnectionError...).
- ``profile_fields`` / ``profiles``: ``Profile`` (one hardened container recipe), the
  built-in security levels and their configuration.
- ``engine``: ``Engine``, one Docker Engine API endpoint, every call under a timeout.
- ``runner`` (host side) with ``runner_main`` / ``runner_child`` / ``runner_hygiene`` (the
  stdlib-only program that lives inside each warm container).
- ``execution``: run one job (resident runner, warm exec or fresh container).
- ``containers`` / ``pool``: ``WarmPool``, warm containers keyed by their full config.

This module deliberately imports nothing, so importing the package stays cheap.
"""
