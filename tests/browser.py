"""A headless Chromium driven by chromedriver over the W3C WebDriver HTTP API (urllib only,
loopback only): the report's browser test and its screenshot script share it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromedriver_path() -> str | None:
    return str(CHROMEDRIVER) if CHROMEDRIVER.exists() else shutil.which("chromedriver")


class WebDriverError(RuntimeError):
    pass


class WebDriver:
    """The few W3C WebDriver calls the test needs, over loopback HTTP (no proxies)."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise WebDriverError(f"{method} {path}: {exc.code} {exc.read()[:2000]!r}") from None

    def s(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        return self.call(method, f"/session/{self.session}{path}", body, timeout)

    def run(self, script: str, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        element = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(element.values()))

    def click(self, css: str) -> None:
        self.s("POST", f"/element/{self.find(css)}/click", {})

    def browser_log(self) -> list[dict] | None:
        for path in ("/se/log", "/log"):
            try:
                return self.s("POST", path, {"type": "browser"})
            except WebDriverError:
                continue
        return None

    def open(self, url: str, timeout: float = 30) -> None:
        """Load ``url`` and wait until the document is complete."""
        self.s("POST", "/url", {"url": url}, timeout=120)
        deadline = time.monotonic() + timeout
        while self.run("return document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise WebDriverError(f"{url} did not finish loading")
            time.sleep(0.1)

    def wait_for_images(self, timeout: float = 30) -> None:
        """Wait until every image has loaded or failed (a screenshot must not catch them half drawn)."""
        deadline = time.monotonic() + timeout
        while not self.run("return Array.from(document.images).every(function (i) { return i.complete; })"):
            if time.monotonic() > deadline:
                raise WebDriverError("images did not finish loading")
            time.sleep(0.1)

    def screenshot(self, css: str | None = None) -> bytes:
        """PNG of the viewport, or of the element ``css`` selects."""
        if css:  # chromedriver clips an element screenshot to the viewport: bring it to the top first
            self.run("document.querySelector(arguments[0]).scrollIntoView({block: 'start'})", css)
        path = f"/element/{self.find(css)}/screenshot" if css else "/screenshot"
        return base64.b64decode(self.s("GET", path))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def headless_chromium(workdir: Path, window: tuple[int, int] = (1400, 1800),
                      on_new_document: str | None = None) -> Iterator[WebDriver]:
    """A chromedriver process and one Chromium session, both ended on exit. ``on_new_document``
    runs in every page before its own scripts (DevTools Page.addScriptToEvaluateOnNewDocument)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    driver_path = chromedriver_path()
    if driver_path is None:
        raise WebDriverError("chromedriver not found (Debian package chromium-driver)")
    log = open(workdir / "chromedriver.log", "wb")
    process = subprocess.Popen([driver_path, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    driver = WebDriver(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if driver.call("GET", "/status", timeout=2).get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise WebDriverError(f"chromedriver did not start; see {workdir / 'chromedriver.log'}")
            time.sleep(0.2)
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={workdir / 'profile'}",
        ]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": str(CHROMIUM), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        created = driver.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, timeout=120)
        driver.session = created["sessionId"]
        if on_new_document:
            driver.s("POST", "/goog/cdp/execute",
                     {"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": on_new_document}})
        yield driver
    finally:
        if driver.session:
            try:
                driver.call("DELETE", f"/session/{driver.session}", timeout=30)
            except (OSError, WebDriverError):
                pass
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
