"""Gleitzeit plugin: the ``consecutive`` circuit breaker.

The class lives in :mod:`gleitzeit_breaker_consecutive.breaker`; this package file imports nothing
so that loading the plugin at startup stays free.
"""

__version__ = "0.1.0"
