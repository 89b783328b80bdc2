"""Real parts for the dashboard's tests and benchmark: configs for ``gleitzeit serve`` over
simulators, traffic through it, and Debian's headless Chromium driven by Selenium through
chromedriver."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

PLUGINS = "ollama,dashboard"  # what the gateway of these tests loads
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def gateway_config(
    urls: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    token: str | None = None,
    probe_interval: float = 0.3,
) -> str:
    """A TOML config: one ``ollama`` hub ``llm`` over ``urls`` with fast probes."""
    ids = ids or [f"s{i}" for i in range(len(urls))]
    lines = []
    if token is not None:
        lines += ["[gateway]", f"token = {json.dumps(token)}", ""]
    lines += [
        "[hubs.llm]",
        'kind = "ollama"',
        'discovery = ["static"]',
        f"health = {{ interval = {probe_interval}, timeout = 1.0 }}",
        "",
    ]
    for resource_id, url in zip(ids, urls, strict=True):
        lines += ["[[hubs.llm.resources]]", f"id = {json.dumps(resource_id)}", f'url = "{url}"', ""]
    return "\n".join(lines)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, driven through chromedriver; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="gleitzeit-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=CHROMEDRIVER)
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


class Traffic:
    """Chat requests through the gateway's Ollama API from a background thread, one after
    another, until ``stop()``; counts what came back."""

    def __init__(self, url: str, token: str | None = None, model: str = "llama3.2") -> None:
        import threading

        self.url = url + "/api/chat"
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
        ).encode()
        self.answers: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.error
        import urllib.request

        while not self._stop.is_set():
            request = urllib.request.Request(self.url, self.body, self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    reply.read()
                    status = reply.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            self.answers[status] = self.answers.get(status, 0) + 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
