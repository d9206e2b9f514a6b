#!/usr/bin/env python3
"""Open the dashboard that ``asv publish`` wrote in headless Chromium and check it renders.

Serves the HTML folder on 127.0.0.1 (an ephemeral port, this process only), drives Debian's
``chromium`` through ``chromedriver`` (package ``chromium-driver``) with the W3C WebDriver
protocol (plain HTTP, no Python dependency), and

1. loads the summary page and one benchmark's graph page,
2. waits until the graph is drawn and checks that its canvas has painted pixels,
3. fails on any JavaScript error (the browser's SEVERE console entries, and errors caught by
   a ``window.onerror`` hook),
4. saves screenshots of both pages.

    python scripts/check_dashboard.py [--html .asv/html] [--out .asv/dashboard]

Exit status 0 when every check passes, 1 otherwise (the reasons are printed).
Setup: ``apt-get update && apt-get install -y chromium chromium-driver``.

The pages asv writes load jQuery, flot, bootstrap, ... from public CDNs. Where those cannot be
reached (``--deps auto`` finds out; ``--deps npm`` forces it), the same packages are fetched
once from the npm registry with ``npm pack`` into ``.asv/dashboard-deps`` and the served HTML
points at those copies instead (the files on disk are not changed).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
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
]

# Collects uncaught errors and unhandled rejections (injected before the page's scripts run
# is not possible over plain WebDriver, so the page is reloaded after installing it).
_HOOK = """
window.__errors = window.__errors || [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
"""

_GRAPH_STATE = """
const cs = Array.from(document.querySelectorAll('canvas'));
let painted = 0;
for (const c of cs) {
  if (!c.width || !c.height) continue;
  try {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) painted++;
  } catch (e) {}
}
return {canvases: cs.length, painted: painted, title: document.title,
        errors: window.__errors || [],
        text: document.body ? document.body.innerText.slice(0, 300) : ''};
"""


class WebDriver:
    """The few W3C WebDriver commands this check needs."""

    def __init__(self, driver: str, chromium: str, profile: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.2)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"{}").get("value")

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def browser_log(self) -> list[dict]:
        try:
            return self.cmd("POST", "/se/log", {"type": "browser"}) or []
        except Exception:
            try:  # older chromedriver endpoint
                return self.cmd("POST", "/log", {"type": "browser"}) or []
            except Exception:
                return []

    def quit(self) -> None:
        try:
            self.cmd("DELETE", "")
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ offline dependencies
_CDN = re.compile(
    r"https://(?:code\.jquery\.com|cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net)/[^\"'\s)]+"
)
#: cdnjs library name -> npm package name, where they differ
_NPM_NAMES = {"stupidtable": "stupid-table-plugin"}


def _npm_source(url: str) -> tuple[str, str, str]:
    """(npm package, version, path inside the package) of a CDN URL."""
    u = urllib.parse.urlparse(url)
    parts = u.path.strip("/").split("/")
    if u.netloc == "cdn.jsdelivr.net" and parts[0] == "npm":
        name, _, ver = parts[1].rpartition("@")
        return name, ver, "/".join(parts[2:])
    if u.netloc == "code.jquery.com":
        m = re.match(r"jquery-([\d.]+)(\.min)?\.js", parts[-1])
        if m:
            return "jquery", m.group(1), f"dist/jquery{m.group(2) or ''}.js"
    if u.netloc == "cdnjs.cloudflare.com" and parts[:2] == ["ajax", "libs"]:
        return _NPM_NAMES.get(parts[2], parts[2]), parts[3], "/".join(parts[4:])
    raise ValueError(f"no npm source known for {url}")


_fetch_lock = threading.Lock()


def _npm_fetch(name: str, version: str, deps: Path) -> Path:
    with _fetch_lock:  # the browser asks for several files of one package at once
        return _npm_fetch_locked(name, version, deps)


def _npm_fetch_locked(name: str, version: str, deps: Path) -> Path:
    """The unpacked npm package (fetched once with ``npm pack``; the nearest published
    version when this one is not on npm)."""
    for spec in (f"{name}@{version}", name):
        dest = deps / spec.replace("/", "_")
        if (dest / "package").is_dir():
            return dest / "package"
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to fetch the dashboard's scripts offline")
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "pack", spec, "--silent", "--pack-destination", str(dest)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        tgz = sorted(dest.glob("*.tgz"))
        if proc.returncode == 0 and tgz:
            with tarfile.open(tgz[0]) as tf:
                tf.extractall(dest, filter="data")
            return dest / "package"
        shutil.rmtree(dest, ignore_errors=True)
    raise RuntimeError(f"npm pack {name}@{version} failed")


def _local_file(url: str, deps: Path) -> Path:
    name, version, path = _npm_source(url)
    pkg = _npm_fetch(name, version, deps)
    candidates = [
        path,
        path.replace(".min.", "."),
        f"dist/{path}",
        f"dist/{path.replace('.min.', '.')}",
    ]
    for c in candidates:
        if (pkg / c).is_file():
            return pkg / c
    raise FileNotFoundError(f"{path} not in npm package {name}@{version}")


def _cdn_reachable(timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen("https://code.jquery.com/", timeout=timeout):
            return True
    except Exception:
        return False


def _serve(
    directory: Path, deps: Path | None = None
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on 127.0.0.1; with ``deps``, CDN URLs in HTML point at local
    copies of the same npm packages (served under ``/__deps__/``)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urllib.parse.urlparse(self.path).path
            if deps is not None and path.startswith("/__deps__/"):
                url = urllib.parse.unquote(path[len("/__deps__/") :])
                try:
                    f = _local_file(url, deps)
                except Exception as e:
                    self.send_error(404, str(e))
                    return
                ctype = "text/css" if f.suffix == ".css" else "application/javascript"
                self._send(f.read_bytes(), ctype)
                return
            if deps is not None and (path.endswith(".html") or path.endswith("/")):
                f = Path(self.translate_path(path))
                if f.is_dir():
                    f = f / "index.html"
                if f.is_file():
                    html = f.read_text(encoding="utf-8")
                    html = _CDN.sub(
                        lambda m: "/__deps__/" + urllib.parse.quote(m.group(0), safe=""), html
                    )
                    # the local copies are not byte-identical (npm ships some files only
                    # unminified): drop the subresource-integrity hashes of the CDN files
                    html = re.sub(r'\s+integrity="[^"]*"', "", html)
                    self._send(html.encode(), "text/html; charset=utf-8")
                    return
            super().do_GET()

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _pick_graph(html: Path) -> str:
    """A benchmark with results to open as a graph page (its name, for the URL fragment)."""
    index = json.loads((html / "index.json").read_text())
    names = sorted(index.get("benchmarks", {}))
    graphs = html / "graphs"
    for name in names:
        if any(graphs.rglob(f"{name}.json")):
            return name
    if not names:
        raise SystemExit(f"{html}/index.json lists no benchmarks: run `asv run` first")
    return names[0]


def _wait(drv: WebDriver, ready, timeout: float):
    deadline = time.monotonic() + timeout
    state = drv.js(_GRAPH_STATE)
    while not ready(state) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = drv.js(_GRAPH_STATE)
    return state


def check(
    html: Path, out: Path, timeout: float, benchmark: str | None, deps: Path | None = None
) -> list[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return ["chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"]
    if not (html / "index.html").exists():
        return [f"{html}/index.html not found: run `asv publish` first"]
    out.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    if deps is not None:  # fetch every package before the browser asks for it
        for page in html.glob("*.html"):
            for url in sorted(set(_CDN.findall(page.read_text(encoding="utf-8")))):
                try:
                    _local_file(url, deps)
                except Exception as e:
                    problems.append(f"cannot provide {url} offline: {e}")
    server, base = _serve(html, deps)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    drv = None
    try:
        drv = WebDriver(driver, chromium, profile)
        name = benchmark or _pick_graph(html)
        pages = [
            ("summary", f"{base}/index.html", lambda s: s["canvases"] > 0),
            ("graph", f"{base}/index.html#{name}", lambda s: s["painted"] > 500),
        ]
        for label, url, ready in pages:
            drv.get(url)
            drv.js(_HOOK)
            drv.js("location.reload(); return 0;")
            time.sleep(0.5)
            drv.js(_HOOK)
            state = _wait(drv, ready, timeout)
            shot = out.with_name(f"{out.name}-{label}.png")
            drv.screenshot(shot)
            print(
                f"{label}: {url}\n  canvases={state['canvases']} painted_pixels="
                f"{state['painted']} title={state['title']!r}\n  screenshot: {shot}"
            )
            if not ready(state):
                problems.append(
                    f"{label} page: graph not drawn within {timeout:.0f} s "
                    f"(canvases={state['canvases']}, painted={state['painted']}); "
                    f"page text: {state['text']!r}"
                )
            for e in state["errors"]:
                problems.append(f"{label} page: JavaScript error: {e}")
            for entry in drv.browser_log():
                if entry.get("level") != "SEVERE" or "favicon.ico" in entry.get("message", ""):
                    continue
                if entry.get("source") == "network":
                    # e.g. the summary graph of a benchmark without results yet: asv shows
                    # an empty tile; a missing script shows up as an undrawn graph above
                    print(f"  warning: {entry.get('message')}")
                else:
                    problems.append(
                        f"{label} page: JavaScript console error: {entry.get('message')}"
                    )
    finally:
        if drv is not None:
            drv.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--html",
        type=Path,
        default=root / ".asv" / "html",
        help="the folder `asv publish` wrote (default .asv/html)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=root / ".asv" / "dashboard",
        help="screenshot path prefix: PREFIX-summary.png, PREFIX-graph.png",
    )
    p.add_argument("--benchmark", default=None, help="benchmark whose graph page to open")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a graph")
    p.add_argument(
        "--deps",
        choices=["auto", "cdn", "npm"],
        default="auto",
        help="where the pages' scripts come from: the CDNs, or npm packages "
        "fetched into --deps-dir (auto: npm when the CDNs are unreachable)",
    )
    p.add_argument("--deps-dir", type=Path, default=root / ".asv" / "dashboard-deps")
    args = p.parse_args(argv)
    deps = None
    if args.deps == "npm" or (args.deps == "auto" and not _cdn_reachable()):
        deps = args.deps_dir.resolve()
        deps.mkdir(parents=True, exist_ok=True)
        print(f"scripts from npm packages in {deps} (CDN URLs rewritten while serving)")
    problems = check(args.html.resolve(), args.out.resolve(), args.timeout, args.benchmark, deps)
    for pr in problems:
        print(f"FAIL: {pr}", file=sys.stderr)
    if not problems:
        print("dashboard OK: graphs drawn, no JavaScript errors")
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
