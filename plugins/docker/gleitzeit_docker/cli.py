"""``gleitzeit docker pull IMAGE`` and ``gleitzeit docker prepare``: images onto engines.

``pull`` fetches one image onto the engines (``--engine URL``, the docker hubs of
``--config``, or ``DOCKER_HOST``/the default socket) with a rich progress bar per layer.
``prepare`` does that for the image of every enabled profile of every docker hub, skipping
images an engine already has. Where no registry is reachable, a missing image ends in an
error naming the image and how to get it (``docker pull`` where a registry answers, else
``docker load`` from a saved image). Exit codes: 0 done, 1 an engine or image problem,
2 a bad config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import click

from gleitzeit_core import ConfigError, GleitzeitError, guarded

__all__ = ["docker_command"]

_CONFIG_HELP = "TOML config file (default: $GLEITZEIT_CONFIG)."
_STEPS = ("Pulling fs layer", "Waiting", "Downloading", "Verifying", "Download complete")
_DONE = ("Pull complete", "Already exists")


class LayerProgress:
    """Turns the engine's pull events into one rich progress bar per layer."""

    def __init__(self, progress: Any, label: str) -> None:
        self.progress = progress
        self.label = label
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: Mapping[str, Any]) -> None:
        layer = event.get("id")
        status = str(event.get("status") or "")
        detail = event.get("progressDetail") or {}
        if not layer or not status.startswith((*_STEPS, "Extracting", *_DONE)):
            if status:
                self.progress.console.print(f"{self.label}: {status}")
            return
        task = self.tasks.get(layer)
        if task is None:
            task = self.tasks[layer] = self.progress.add_task(f"{layer}", total=None)
        description = f"{layer} {status.lower()}"
        total, current = detail.get("total"), detail.get("current")
        if status in _DONE:
            self.progress.update(task, total=1, completed=1, description=description)
        elif isinstance(total, int) and total > 0:
            self.progress.update(task, total=total, completed=current or 0, description=description)
        else:
            self.progress.update(task, description=description)


async def _pull(url: str, images: Sequence[str], *, skip_present: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from gleitzeit_docker.engine import Engine
    from gleitzeit_docker.errors import ImageMissing

    console = Console(stderr=True)
    engine = Engine(url)
    try:
        await engine.ping()
        for image in images:
            if skip_present and await engine.image_exists(image):
                console.print(f"{url}: {image} present")
                continue
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
            with Progress(*columns, console=console) as progress:
                progress.console.print(f"{url}: pulling {image}")
                await engine.pull(image, LayerProgress(progress, image))
            if not await engine.image_exists(image):  # a stream that ended without it
                raise ImageMissing(f"pulling {image!r} on {url} did not produce it", image)
            console.print(f"{url}: {image} ready")
    finally:
        await engine.close()


def _docker_hubs(config: str | None) -> list[Any]:
    from gleitzeit_core import Runtime

    runtime = Runtime.from_config(config)
    return [hub for hub in runtime.hubs.values() if hub.kind == "docker"]


async def _engines_of(hubs: Sequence[Any]) -> list[str]:
    urls: list[str] = []
    for hub in hubs:
        for discoverer in hub.discoverers:
            for spec in await discoverer.discover(hub):
                if spec.endpoint not in urls:
                    urls.append(spec.endpoint)
    return urls


def _run(coro: Any) -> None:
    from gleitzeit_docker.errors import DockerLayerError

    try:
        asyncio.run(coro)
    except DockerLayerError as exc:  # the engine's own words say what failed: one line
        raise GleitzeitError(str(exc)) from exc


@click.group("docker")
def docker_command() -> None:
    """Docker sandboxes: pull and prepare the images of the python/v1 profiles."""


@docker_command.command("pull")
@click.argument("image")
@click.option(
    "--engine",
    "engines",
    multiple=True,
    help="Engine URL (repeatable; default: the docker hubs of --config, else $DOCKER_HOST "
    "or the default socket).",
)
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@guarded
def pull_command(image: str, engines: tuple[str, ...], config: str | None) -> None:
    """Pull IMAGE onto the engines, with a progress bar per layer."""

    async def go() -> None:
        from gleitzeit_docker.discovery import default_engine_url

        urls = list(engines)
        if not urls and config is not None:
            urls = await _engines_of(_docker_hubs(config))
        for url in urls or [default_engine_url()]:
            await _pull(url, [image], skip_present=False)

    _run(go())


@docker_command.command("prepare")
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@guarded
def prepare_command(config: str | None) -> None:
    """Make sure every engine has the image of every enabled profile (pulls what is
    missing where a registry is reachable)."""

    async def go() -> None:
        hubs = _docker_hubs(config)
        if not hubs:
            raise ConfigError(
                "no docker hub is configured; add a [hubs.NAME] table with kind = 'docker'"
            )
        images: list[str] = []
        for hub in hubs:
            for profile in hub.profiles.profiles.values():
                enabled = hub.profiles.allow_trusted or not profile.networked
                if enabled and profile.image not in images:
                    images.append(profile.image)
        for url in await _engines_of(hubs):
            await _pull(url, images, skip_present=True)

    _run(go())
