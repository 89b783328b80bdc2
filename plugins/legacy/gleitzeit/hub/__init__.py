"""Hub-era import path ``gleitzeit.hub`` (served by the gleitzeit-legacy shim): ``base``,
``ollama_hub`` and ``docker_hub`` as adapters over the runtime's hubs."""
