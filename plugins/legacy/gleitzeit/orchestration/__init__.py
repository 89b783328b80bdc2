"""Old import path ``gleitzeit.orchestration`` (served by the gleitzeit-legacy shim)."""
