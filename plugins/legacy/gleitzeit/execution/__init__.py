"""Old import path ``gleitzeit.execution`` (served by the gleitzeit-legacy shim)."""
