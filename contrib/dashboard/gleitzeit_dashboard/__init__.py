"""An operations dashboard in the browser at ``GET /gleitzeit/ui`` on the Gleitzeit gateway."""
