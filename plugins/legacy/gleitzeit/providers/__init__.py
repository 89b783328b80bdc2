"""Old import path ``gleitzeit.providers`` (served by the gleitzeit-legacy shim)."""
