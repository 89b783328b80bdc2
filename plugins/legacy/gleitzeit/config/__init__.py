"""Hub-era import path ``gleitzeit.config`` (served by the gleitzeit-legacy shim)."""
