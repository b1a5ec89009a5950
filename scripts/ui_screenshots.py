#!/usr/bin/env python3
"""Screenshots of capstan's pages in the Prefect UI, taken by headless Chromium and checked.

Why a browser: the Prefect UI is a single-page app, so an HTTP 200 for ``/`` proves nothing. What a
person sees exists only after the JavaScript has fetched the API and rendered. This script drives
Debian's ``chromium`` over the DevTools protocol (its own websocket on 127.0.0.1; no selenium or
playwright, nothing downloaded). For each page it polls the rendered text until every expected
string appears, or until a deadline. Then it captures a 1400x1000 PNG and checks that the PNG is not
one flat colour (a blank page or a spinner). The text is also saved next to the PNG.

The browser is kept to 127.0.0.1: every other host name resolves to NOTFOUND, no proxy is used, and
background networking, component updates, sync and metrics are off. Every URL the pages request is
recorded, and one that is not for 127.0.0.1 fails the run.

Pages (UI v1, which the server serves at ``/``):
- ``deployment.png``: the run form of a deployment (default create-cluster/default). It shows each
  parameter with its description and default, taken from the flow's docstring and signature.
- ``flow-run.png``: a finished flow run with its task runs (``facts[cp1]``, ``etcd[cp1]`` ...);
  ``flow-run-artifacts.png``: the same run's Artifacts tab.

Usage (without --flow-run: the newest completed run of the deployment's flow):
    .venv/bin/python scripts/ui_screenshots.py --api http://127.0.0.1:4200/api --out docs/ui \
        [--deployment create-cluster/default] [--flow-run ID]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

WIDTH, HEIGHT = 1400, 1000
ISOLATION = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--no-proxy-server",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability", "--disable-breakpad",
    "--metrics-recording-only", "--no-first-run", "--no-default-browser-check", "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
]  # fmt: skip


def offsite(urls: list[str]) -> list[str]:
    """The requested URLs that were not for 127.0.0.1 (page-local schemes such as data: aside)."""
    parts = {u: urllib.parse.urlsplit(u) for u in urls}
    local = ("data", "blob", "about", "chrome", "devtools")
    return sorted(u for u, p in parts.items() if p.scheme not in local and p.hostname != "127.0.0.1")


class UiCheckError(Exception):
    """A page did not render what a person should see (the message names the page and what is missing)."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_argv(binary: str, profile: Path) -> list[str]:
    """Headless Chromium with a DevTools port of its choosing (written to profile/DevToolsActivePort)."""
    return [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        *ISOLATION, "about:blank",
    ]  # fmt: skip


@dataclass
class Shot:
    """One page as rendered: its screenshot, its visible text, and the colour statistics of the PNG."""

    url: str
    png: Path
    text: str
    dominant: float  # share of the most common colour
    colours: int  # distinct colours among the sampled pixels


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol; stopped by its PID."""

    def __init__(self, binary: str | None = None, startup_timeout: float = 60.0) -> None:
        found = binary or find_chromium()
        if found is None:
            raise UiCheckError("chromium not found (Debian: apt-get install chromium)")
        self._tmp = tempfile.TemporaryDirectory(prefix="capstan-chromium-")
        profile = Path(self._tmp.name)
        self._log = (profile / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            chromium_argv(found, profile), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._ids = 0
        self.requests: list[str] = []  # every URL the page asked for (to check it stayed on loopback)
        try:
            port = self._devtools_port(profile / "DevToolsActivePort", startup_timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                targets = json.loads(resp.read())
            page = next(t for t in targets if t.get("type") == "page")
            from websockets.sync.client import connect

            self._ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Network.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False,
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UiCheckError(f"chromium exited with code {self.proc.returncode} at startup")
            if path.exists():
                first = path.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.1)
        raise UiCheckError(f"chromium did not open its DevTools port within {timeout:g} s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command. Of the events arriving meanwhile only requests are kept (their URLs)."""
        self._ids += 1
        self._ws.send(json.dumps({"id": self._ids, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=60))
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(str(msg["params"]["request"]["url"]))
            if msg.get("id") != self._ids:
                continue
            if "error" in msg:
                raise UiCheckError(f"DevTools {method}: {msg['error'].get('message')}")
            result: dict[str, Any] = msg.get("result", {})
            return result

    def text(self) -> str:
        res = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return str(res.get("result", {}).get("value") or "")

    def wait_text(self, expect: list[str], deadline: float) -> tuple[str, list[str]]:
        """Poll the page's visible text until it holds every ``expect`` string and has stopped changing
        for one poll interval (the SPA is done rendering), or until ``deadline``: (text, missing)."""
        previous = None
        while True:  # at least one look, even past the deadline
            text = self.text()
            missing = [e for e in expect if e not in text]
            if (not missing and text == previous) or time.monotonic() > deadline:
                return text, missing
            previous = text
            time.sleep(0.5)

    def wait_loaded(
        self, expect: list[str], deadline: float, reload_after: float = 60.0
    ) -> tuple[str, list[str]]:
        """``wait_text`` after a navigation, reloading the page (as a person would) when it still lacks
        something after ``reload_after`` seconds. Why: in one CI run (three lab tests beside it) the
        deployment form showed none of its text for 180 s; the UI does not repeat a first API call or
        script load that failed, so waiting longer does not help, and a reload does what a person would."""
        while True:
            text, missing = self.wait_text(expect, min(deadline, time.monotonic() + reload_after))
            if not missing or time.monotonic() >= deadline:
                return text, missing
            self.call("Page.reload", ignoreCache=True)

    def click_tab(self, label: str) -> bool:
        """Click the tab labelled ``label``, as a person would (the page is not scrolled: the screenshot
        shows the top of the page, the run's header and graph, and the start of the tab's content)."""
        js = (
            "(() => { const el = Array.from(document.querySelectorAll('.p-tab, [role=tab]'))"
            f".find(e => e.innerText.trim() === {json.dumps(label)}); if (!el) return false;"
            " el.click(); return true; })()"
        )
        return bool(self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value"))

    def shoot(
        self, url: str, expect: list[str], png: Path, timeout: float = 240.0, tab: str | None = None
    ) -> Shot:
        """Open ``url`` (then its tab ``tab``), wait until the page shows every ``expect`` string, capture.

        On a timeout the screenshot and text are still written (for the person debugging) before the
        error is raised."""
        self.call("Page.navigate", url=url)
        text, missing = self.wait_loaded([tab] if tab else expect, time.monotonic() + timeout)
        if tab and not missing:
            if not self.click_tab(tab):
                missing = [f"tab {tab}"]
            else:
                text, missing = self.wait_text(expect, time.monotonic() + timeout)
        png.parent.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        png.write_bytes(base64.b64decode(data))
        png.with_suffix(".txt").write_text(text)
        if missing:
            raise UiCheckError(f"{url}: after {timeout:g} s the page does not show {missing} (see {png})")
        dominant, colours = png_colours(png)
        return Shot(url, png, text, dominant, colours)

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            from capstan.platform.server import stop

            stop(self.proc, grace=10)
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def png_rows(path: Path) -> tuple[int, int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes): width, height, bytes
    per pixel, rows. Pure Python (no image library in the venv); a few seconds for 1400x1000."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise UiCheckError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None or header[2] != 8 or header[3] not in (2, 6) or header[6] != 0:
        raise UiCheckError(f"{path}: not an 8-bit non-interlaced RGB/RGBA PNG ({header})")
    width, height, bpp = header[0], header[1], 3 if header[3] == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    prev, rows = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                left, upleft = (line[i - bpp], prev[i - bpp]) if i >= bpp else (0, 0)
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def png_colours(path: Path, step: int = 3) -> tuple[float, int]:
    """(share of the most common colour, number of distinct colours) over every ``step``-th pixel."""
    _, _, bpp, rows = png_rows(path)
    counts: Counter[bytes] = Counter()
    for row in rows:
        for x in range(0, len(row), bpp * step):
            counts[row[x : x + 3]] += 1
    total = sum(counts.values())
    return counts.most_common(1)[0][1] / total, len(counts)


def check_not_blank(shot: Shot, max_dominant: float = 0.97, min_colours: int = 32) -> None:
    """A blank page or a spinner is one colour to within a few hundred pixels; a rendered page is not."""
    if shot.dominant > max_dominant or shot.colours < min_colours:
        raise UiCheckError(
            f"{shot.png}: looks blank ({shot.dominant:.1%} one colour, {shot.colours} colours) for {shot.url}"
        )


class Api:
    """The few REST reads the script needs (no Prefect client: this is what any outside tool can do)."""

    def __init__(self, api_url: str) -> None:
        self.url = api_url.rstrip("/")

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    @property
    def ui(self) -> str:
        """The UI's base URL: the API URL without its /api suffix (``prefect server start`` serves both)."""
        return self.url.removesuffix("/api")

    def deployment(self, full_name: str) -> dict[str, Any]:
        flow, _, name = full_name.partition("/")
        quoted = f"{urllib.parse.quote(flow)}/{urllib.parse.quote(name)}"
        try:
            result: dict[str, Any] = self("GET", f"/deployments/name/{quoted}")
        except urllib.error.HTTPError as exc:
            raise UiCheckError(f"--deployment {full_name}: {exc} (names are flow/deployment)") from None
        return result

    def newest_completed_run(self, flow_id: str) -> dict[str, Any]:
        completed = {"state": {"type": {"any_": ["COMPLETED"]}}}
        body = {
            "flows": {"id": {"any_": [flow_id]}},
            "flow_runs": completed,
            "sort": "END_TIME_DESC",
            "limit": 1,
        }
        runs: list[dict[str, Any]] = self("POST", "/flow_runs/filter", body)
        if not runs:
            raise UiCheckError(f"no completed run of flow {flow_id} to show; pass --flow-run")
        return runs[0]

    def task_run_names(self, run_id: str) -> list[str]:
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
        return [t["name"] for t in self("POST", "/task_runs/filter", body)]

    def artifact_keys(self, run_id: str) -> list[str]:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        return sorted({a["key"] for a in self("POST", "/artifacts/filter", body) if a.get("key")})


def shown_description(description: str) -> str:
    """The text a person reads for a parameter description: the form renders it as Markdown, so code
    spans lose their backticks and lines are joined. Anything else Markdown would change (``<name>``
    outside a code span is dropped as HTML, ``*x*`` loses its stars) is kept, so it shows up missing."""
    return " ".join(description.replace("`", "").split())


def parameter_texts(deployment: dict[str, Any]) -> list[str]:
    """What the run form must show for each parameter: its name and its description."""
    props: dict[str, Any] = deployment["parameter_openapi_schema"].get("properties", {})
    texts: list[str] = []
    for name, prop in props.items():
        texts.append(prop.get("title") or name)
        if prop.get("description"):
            texts.append(shown_description(str(prop["description"])))
    return texts


def deployment_page(browser: Browser, api: Api, full_name: str, out: Path, timeout: float = 240) -> Shot:
    dep = api.deployment(full_name)
    flow_name = full_name.partition("/")[0]
    url = f"{api.ui}/deployments/deployment/{dep['id']}/run"
    expect = [flow_name, dep["name"], *parameter_texts(dep)]
    shot = browser.shoot(url, expect, out / "deployment.png", timeout)
    check_not_blank(shot)
    return shot


def flow_run_pages(
    browser: Browser, api: Api, run_id: str, out: Path, timeout: float = 240, max_tasks: int = 50
) -> tuple[Shot, Shot]:
    """The run's Task Runs tab (the first ``max_tasks`` names must show) and its Artifacts tab."""
    run = api("GET", f"/flow_runs/{run_id}")
    flow = api("GET", f"/flows/{run['flow_id']}")
    tasks = api.task_run_names(run_id)[:max_tasks]
    base = f"{api.ui}/runs/flow-run/{run_id}"
    runs = browser.shoot(
        base, [flow["name"], run["name"], *tasks], out / "flow-run.png", timeout, "Task Runs"
    )
    check_not_blank(runs)
    keys = api.artifact_keys(run_id)
    arts = browser.shoot(base, [run["name"], *keys], out / "flow-run-artifacts.png", timeout, "Artifacts")
    check_not_blank(arts)
    return runs, arts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="the Prefect API URL, e.g. http://127.0.0.1:4200/api")
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    parser.add_argument("--deployment", default="create-cluster/default")
    parser.add_argument("--flow-run", help="flow run id (default: newest completed run of that flow)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds each page may take to render")
    args = parser.parse_args(argv)
    api = Api(args.api)
    try:
        with Browser() as browser:
            shots = [deployment_page(browser, api, args.deployment, args.out, args.timeout)]
            run_id = (
                args.flow_run or api.newest_completed_run(api.deployment(args.deployment)["flow_id"])["id"]
            )
            shots += flow_run_pages(browser, api, run_id, args.out, args.timeout)
            elsewhere = offsite(browser.requests)
    except (UiCheckError, urllib.error.URLError) as exc:
        print(f"ui-screenshots: {exc}", file=sys.stderr)
        return 1
    if elsewhere:
        print(f"ui-screenshots: the pages asked for more than 127.0.0.1: {elsewhere}", file=sys.stderr)
        return 1
    for s in shots:
        print(f"{s.png}: {s.dominant:.1%} background, {s.colours} colours, {s.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
