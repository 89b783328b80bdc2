"""Hub-era import path ``gleitzeit.migration`` (served by the gleitzeit-legacy shim)."""
