"""The pull progress bar: the engine's pull events become one rich progress bar per layer."""

from __future__ import annotations

import io

from gleitzeit_docker.cli import LayerProgress
from rich.console import Console
from rich.progress import Progress


def test_pull_events_drive_one_bar_per_layer() -> None:
    """Each layer gets its own bar that fills with the download and completes when the layer
    is done; events without a layer (the digest, the final status) are printed as lines."""
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with Progress(console=console, auto_refresh=False) as progress:
        bars = LayerProgress(progress, "localpython:3")
        events = [
            {"status": "Pulling from library/python", "id": "3"},
            {"status": "Pulling fs layer", "id": "aaa"},
            {"status": "Pulling fs layer", "id": "bbb"},
            {
                "status": "Downloading",
                "id": "aaa",
                "progressDetail": {"current": 500, "total": 1000},
            },
            {
                "status": "Downloading",
                "id": "bbb",
                "progressDetail": {"current": 10, "total": 2000},
            },
            {"status": "Pull complete", "id": "aaa"},
            {"status": "Already exists", "id": "bbb"},
            {"status": "Digest: sha256:0123"},
            {"status": "Status: Downloaded newer image for localpython:3"},
        ]
        halfway = None
        for event in events:
            bars(event)
            if event.get("status") == "Downloading" and event["id"] == "aaa":
                halfway = progress.tasks[bars.tasks["aaa"]].percentage
        tasks = {layer: progress.tasks[task] for layer, task in bars.tasks.items()}
    assert set(tasks) == {"aaa", "bbb"}
    assert halfway == 50.0
    assert all(task.finished for task in tasks.values())
    printed = out.getvalue()
    assert "Digest: sha256:0123" in printed
    assert "Downloaded newer image" in printed
