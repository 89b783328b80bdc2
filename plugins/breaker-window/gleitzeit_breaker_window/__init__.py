"""Gleitzeit plugin: the ``window`` circuit breaker (failure and slow-call rates, as resilience4j).

The class lives in :mod:`gleitzeit_breaker_window.breaker`; this package file imports nothing so
that loading the plugin at startup stays free.
"""

__version__ = "0.1.0"
