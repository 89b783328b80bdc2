"""Gleitzeit plugin: the ``adaptive`` breaker (client-side adaptive throttling, Google SRE book).

The class lives in :mod:`gleitzeit_breaker_adaptive.breaker`; this package file imports nothing so
that loading the plugin at startup stays free.
"""

__version__ = "0.1.0"
