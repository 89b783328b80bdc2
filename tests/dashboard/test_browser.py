"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium through
chromedriver, over ``gleitzeit serve`` with three simulator processes."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gleitzeit_ollama.sim import SimProcess

from gleitzeit_core.testing.serve import GatewayProcess
from tests.ollama.conftest import fast_config

from .harness import CHROMEDRIVER, CHROMIUM, PLUGINS, Traffic, chromium, gateway_config

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "dashboard.png"
TOKEN = "browser-test-key"
HOSTILE_ID = "<img src=x onerror=\"document.title='pwned'\">"

pytestmark = pytest.mark.timeout(240)

# Debian's chromium and chromium-driver are part of the test setup (scripts/test.sh installs
# them); without them this is a failure, not a skip.
for binary in (CHROMIUM, CHROMEDRIVER):
    assert shutil.which(binary), f"{binary} is missing: apt-get install chromium chromium-driver"


@pytest.fixture
def sims() -> Iterator[list[SimProcess]]:
    """Three simulator processes (``llama3.2`` on each), killed at the end."""
    started: list[SimProcess] = []
    try:
        for i in range(3):
            config = fast_config(name=f"s{i}", models=["llama3.2"], latency_ms=15.0)
            started.append(SimProcess(config).start())
        yield started
    finally:
        for sim in started:
            sim.kill()


def rows(driver: Any) -> dict[str, str]:
    """Resource id -> the state the page shows, read from the live DOM."""
    result: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-resource]')]"
        ".map(tr => [tr.dataset.resource, tr.children[1].textContent]))"
    )
    return result


def wait_for(driver: Any, what: str, condition: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"the page never showed {what}; it shows {rows(driver)}")


def log_in(driver: Any, url: str) -> None:
    """Open the page, try a wrong key (refused, the form says so), then the right one, and
    wait for its cookie."""
    driver.get(url + "/gleitzeit/ui")
    wait_for(driver, "the login form", lambda: driver.find_element("id", "login").is_displayed())
    for key in ("not-the-key", TOKEN):
        field = driver.find_element("id", "key")
        field.clear()
        field.send_keys(key)
        driver.find_element("css selector", "#login button[type=submit]").click()
        if key != TOKEN:
            wait_for(
                driver,
                "the wrong key refused",
                lambda: driver.find_element("id", "login-error").text == "wrong key",
            )
            assert driver.get_cookies() == []
    wait_for(
        driver,
        "the cookie",
        lambda: "gleitzeit_key" in {c["name"] for c in driver.get_cookies()},
    )


def gateway_status(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "/gleitzeit/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        data: dict[str, Any] = json.loads(reply.read())
        return data


def preload(url: str, model: str = "llama3.2") -> None:
    body = json.dumps({"model": model, "keep_alive": "1h"}).encode()
    request = urllib.request.Request(
        url + "/api/generate", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200


def test_dashboard_live_in_chromium(sims: list[SimProcess], tmp_path: Path) -> None:
    """Logged in with the key (kept in an HttpOnly, SameSite=Strict cookie page scripts cannot
    read), the page lists every resource; when a simulator dies the page
    marks it down without a reload; the Drain button drains a resource at the gateway and the
    page says so, Un-drain puts it back; charts and the events timeline fill; Log out drops
    the cookie and shows the login form. The screenshot is saved (and copied to docs/ with
    GLEITZEIT_UPDATE_SCREENSHOT=1)."""
    config = gateway_config([s.url for s in sims], token=TOKEN)
    with GatewayProcess(config, tmp_path, PLUGINS) as gateway, chromium() as driver:
        log_in(driver, gateway.url)
        cookie = next(c for c in driver.get_cookies() if c["name"] == "gleitzeit_key")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie") == ""  # scripts never see it
        wait_for(
            driver,
            "three resources up",
            lambda: rows(driver) == dict.fromkeys(["s0", "s1", "s2"], "up"),
        )
        for sim in sims:  # warm everywhere, so the hub spreads the calls over all three
            preload(sim.url)
        driver.execute_script("window.gleitzeitNoReload = 42")
        with Traffic(gateway.url, TOKEN) as traffic:
            time.sleep(3)
            sims[1].kill()
            wait_for(driver, "s1 down", lambda: rows(driver).get("s1") == "down")
            assert driver.execute_script("return window.gleitzeitNoReload") == 42, "page reloaded"
            button = driver.find_element("css selector", 'tr[data-resource="s2"] button.action')
            assert button.text == "Drain"
            button.click()
            wait_for(driver, "s2 draining", lambda: rows(driver).get("s2") == "draining")
            assert next(
                r for r in gateway_status(gateway.url)["hubs"][0]["resources"] if r["id"] == "s2"
            )["draining"]
            time.sleep(3)  # some more traffic on s0 for the charts
            shot = tmp_path / "dashboard.png"
            assert driver.save_screenshot(str(shot))
        assert traffic.answers.get(200, 0) > 0
        events = driver.execute_script(
            "return [...document.querySelectorAll('#events li')]"
            ".map(li => li.dataset.kind + ' ' + li.textContent)"
        )
        assert any(e.startswith("health") and "s1" in e and "-> unhealthy" in e for e in events), (
            events
        )
        assert any(e.startswith("draining") and "s2" in e for e in events), events
        points = driver.execute_script(
            "return document.querySelectorAll("
            "'#throughput-chart canvas, #latency-chart canvas').length"
        )
        assert points == 2
        button = driver.find_element("css selector", 'tr[data-resource="s2"] button.action')
        assert button.text == "Un-drain"
        button.click()
        wait_for(driver, "s2 back up", lambda: rows(driver).get("s2") == "up")
        assert driver.execute_script("return window.gleitzeitNoReload") == 42
        load_ms = driver.execute_script("return document.documentElement.dataset.firstRenderMs")
        assert load_ms is not None
        driver.find_element("id", "logout").click()
        wait_for(
            driver,
            "the login form again",
            lambda: driver.find_element("id", "login").is_displayed(),
        )
        assert "gleitzeit_key" not in {c["name"] for c in driver.get_cookies()}
    assert shot.stat().st_size > 10_000
    if os.environ.get("GLEITZEIT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_hostile_resource_id_renders_as_text(sims: list[SimProcess], tmp_path: Path) -> None:
    """A resource id that is markup (``<img src=x onerror=...>``) shows as those characters in
    the table and the timeline: no element is made from it and its handler never runs."""
    ids = [HOSTILE_ID, "s1", "s2"]
    config = gateway_config([s.url for s in sims], ids=ids)
    with GatewayProcess(config, tmp_path, PLUGINS) as gateway, chromium() as driver:
        driver.get(gateway.url + "/gleitzeit/ui")
        wait_for(driver, "the hostile id as text", lambda: HOSTILE_ID in rows(driver))
        wait_for(
            driver,
            "a health event of the hostile id",
            lambda: HOSTILE_ID in driver.find_element("id", "events").text,
        )
        cell = driver.execute_script(
            "return document.querySelector('tr[data-resource]').children[0].textContent"
        )
        assert cell == HOSTILE_ID
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert driver.title == "Gleitzeit dashboard"


HUB_ERA_PATHS = {
    "hub": {"requests": 90, "errors": 2, "error_rate": 0.022, "p50_ms": 4.0, "p95_ms": 9.5,
            "p99_ms": 12.0},
    "legacy": {"requests": 10, "errors": 0, "error_rate": 0.0, "p50_ms": 6.0, "p95_ms": 11.0,
               "p99_ms": 15.0},
    "rollout": {"use_hub_architecture": True, "rollout_percent": 90, "note": HOSTILE_ID},
}  # fmt: skip
MAIN_PATHS = {"llm/v1": {"hub": HUB_ERA_PATHS["hub"]}}


def test_paths_and_hostile_names_render_as_text(sims: list[SimProcess], tmp_path: Path) -> None:
    """The page's renderers, fed in the browser: the hub-era ``paths`` section shows a hub and
    a legacy row with their numbers and the rollout setting; the per-provider shape with only
    hub traffic says "no legacy traffic"; a hostile model name, hub name and rollout value
    show as text and create no element."""
    config = gateway_config([s.url for s in sims])
    with GatewayProcess(config, tmp_path, PLUGINS) as gateway, chromium() as driver:
        driver.get(gateway.url + "/gleitzeit/ui")
        wait_for(driver, "the resources", lambda: len(rows(driver)) == 3)
        # one script per check: the renderers run and are read before the next poll redraws
        hub_era = driver.execute_script(
            "window.gleitzeitDashboard.renderPaths({paths: arguments[0]});"
            "const box = document.getElementById('paths');"
            "return {rows: [...box.querySelectorAll('tr[data-path]')]"
            "  .map(tr => [...tr.children].map(td => td.textContent)),"
            " text: box.textContent, elements: box.querySelectorAll('img').length}",
            HUB_ERA_PATHS,
        )
        assert hub_era["rows"] == [
            ["hub", "-", "90", "2.2", "4.0", "9.5", "12"],
            ["legacy", "-", "10", "0.0", "6.0", "11", "15"],
        ]
        assert "rollout_percent: 90" in hub_era["text"]
        assert HOSTILE_ID in hub_era["text"]
        assert "no legacy traffic" not in hub_era["text"]
        assert hub_era["elements"] == 0
        only_hub = driver.execute_script(
            "window.gleitzeitDashboard.renderPaths({paths: arguments[0]});"
            "return document.getElementById('paths').textContent",
            MAIN_PATHS,
        )
        assert "llm/v1" in only_hub
        assert "no legacy traffic" in only_hub
        status = {
            "hubs": [
                {
                    "name": HOSTILE_ID,
                    "kind": "ollama",
                    "strategy": "p2c",
                    "panic": False,
                    "counters": {},
                    "resources": [
                        {
                            "id": "m",
                            "endpoint": "http://127.0.0.1:9",
                            "health": "healthy",
                            "health_detail": "",
                            "breaker": "closed",
                            "ejected": False,
                            "ejected_for_s": 0,
                            "ejections": 0,
                            "draining": False,
                            "in_flight": 0,
                            "metrics": {"rate_per_s": 0, "error_rate": 0},
                            "details": {"loaded": {HOSTILE_ID: {}}},
                        }
                    ],
                }
            ]
        }
        hostile = driver.execute_script(
            "window.gleitzeitDashboard.renderHubs(arguments[0]);"
            "const section = document.querySelector('section.hub[data-hub]:last-of-type');"
            "return {title: section.querySelector('h2').textContent,"
            " models: section.querySelector('tr[data-resource]').children[11].textContent,"
            " elements: document.querySelectorAll('img').length}",
            status,
        )
        assert HOSTILE_ID in hostile["title"]
        assert hostile["models"] == HOSTILE_ID
        assert hostile["elements"] == 0
        assert driver.title == "Gleitzeit dashboard"


@contextlib.contextmanager
def page_elsewhere(html: str) -> Iterator[str]:
    """A page served from another port of 127.0.0.1 (same site as the gateway: SameSite
    ignores ports), as any local program's web page is; yields its URL."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


EVIL_PAGE = """<!doctype html><title>loading</title><script>
const gw = GATEWAY;
const image = new Promise((done) => {
  const img = new Image();
  img.onload = img.onerror = done;
  img.src = gw + "/gleitzeit/status";
});
const asCookie = {mode: "no-cors", credentials: "include"};
Promise.allSettled([
  image,
  fetch(gw + "/gleitzeit/status", asCookie),
  fetch(gw + "/gleitzeit/ui/history", asCookie),
  fetch(gw + "/api/tags", asCookie),
  fetch(gw + "/gleitzeit/drain", {...asCookie, method: "POST",
    headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({hub: "llm", resource: "s0", remove: false})}),
]).then(() => { document.title = "done"; });
</script>"""


def test_a_page_on_another_port_gets_nothing_with_the_cookie(
    sims: list[SimProcess], tmp_path: Path
) -> None:
    """Logged in to the dashboard, the browser then opens a page from another port of the
    same host; that page's image and no-cors fetches to the gateway (status, history, the
    Ollama API, a drain) carry the SameSite=Strict cookie, since ports do not make another
    site, yet none of them is served as the key: its request count grows only by our own
    bearer status call, and nothing is drained."""
    config = gateway_config([s.url for s in sims], token=TOKEN)
    with GatewayProcess(config, tmp_path, PLUGINS) as gateway, chromium() as driver:
        log_in(driver, gateway.url)
        driver.get("about:blank")  # the dashboard stops polling
        time.sleep(2)
        before = gateway_status(gateway.url)["callers"]["admin"]["requests"]
        with page_elsewhere(EVIL_PAGE.replace("GATEWAY", json.dumps(gateway.url))) as evil:
            driver.get(evil)
            deadline = time.monotonic() + 45
            while driver.title != "done":
                assert time.monotonic() < deadline, "the page elsewhere never finished"
                time.sleep(0.2)
        status = gateway_status(gateway.url)
        assert status["callers"]["admin"]["requests"] == before + 1  # this status call only
        assert not any(r["draining"] for r in status["hubs"][0]["resources"])
