#!/usr/bin/env python3
"""Serve the dashboard that ``asv publish`` wrote, offline, or check it in headless Chromium.

The pages asv writes load jQuery, flot, bootstrap, stupidtable and blueimp-md5 from public
CDNs; without internet ``asv preview`` shows asv's "external (JavaScript) dependencies failed
to load" page. This script serves ``.asv/html`` with those scripts taken from local copies of
the same npm packages (the CDN URLs in the HTML are rewritten while serving, nothing on disk
changes)::

    python scripts/check_dashboard.py --fetch-deps   # once: npm packages -> .asv/dashboard-deps
    python scripts/check_dashboard.py --serve        # http://127.0.0.1:8080/ until Ctrl-C
    python scripts/check_dashboard.py                # headless check (below)

Needs: Python 3.10+ (standard library only). ``--fetch-deps`` (and the first ``--serve`` or
check when ``.asv/dashboard-deps`` is missing) needs ``npm`` and the npm registry: it runs
``npm pack`` for 6 packages (11 MB unpacked). After that the folder makes it work without any
network; it can be copied from another machine. ``--deps cdn`` serves the pages unchanged.

The check (the default) serves the folder on an ephemeral port, drives Debian's ``chromium``
through ``chromedriver`` (``apt-get install -y chromium chromium-driver``) with the W3C
WebDriver protocol (plain HTTP), and

1. loads the summary page, one benchmark's graph page and the Regressions page,
2. waits until the graphs are drawn (painted canvas pixels) and the regressions table is built,
3. fails on any JavaScript error (the browser's SEVERE console entries, and errors caught by
   a ``window.onerror`` hook),
4. saves screenshots of the pages and prints the Regressions page's entries
   (from ``regressions.json``).

Exit status 0 when every check passes, 1 otherwise (the reasons are printed).
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

_PAGE_STATE = """
const cs = Array.from(document.querySelectorAll('canvas'));
let painted = 0;
for (const c of cs) {
  if (!c.width || !c.height) continue;
  try {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) painted++;
  } catch (e) {}
}
// the regressions table of the branch shown (asv builds one hidden div per branch)
const shown = Array.from(document.querySelectorAll('#regressions-body [id^="regression-div-"]'))
  .filter(d => d.offsetParent !== null);
const table = shown.length ? shown[0].querySelector('table')
                           : document.querySelector('#regressions-body table');
const rows = table ? table.querySelectorAll('tbody tr').length : -1;
return {canvases: cs.length, painted: painted, title: document.title,
        regression_rows: rows,
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
CDN = re.compile(
    r"https://(?:code\.jquery\.com|cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net)/[^\"'\s)]+"
)
#: cdnjs library name -> npm package name, where they differ
_NPM_NAMES = {"stupidtable": "stupid-table-plugin"}
#: where the local copies are served from
DEPS_PREFIX = "/__deps__/"


def npm_source(url: str) -> tuple[str, str, str]:
    """(npm package, version, path inside the package) of a CDN URL in asv's pages."""
    u = urllib.parse.urlparse(url)
    parts = u.path.strip("/").split("/")
    if u.netloc == "cdn.jsdelivr.net" and parts[0] == "npm" and len(parts) > 2:
        if parts[1].startswith("@"):  # a scoped package: @scope/name@version
            name, _, ver = f"{parts[1]}/{parts[2]}".rpartition("@")
            return name, ver, "/".join(parts[3:])
        name, _, ver = parts[1].rpartition("@")
        return name, ver, "/".join(parts[2:])
    if u.netloc == "code.jquery.com":
        m = re.fullmatch(r"jquery-([\d.]+)(\.min)?\.js", parts[-1])
        if m:
            return "jquery", m.group(1), f"dist/jquery{m.group(2) or ''}.js"
    if u.netloc == "cdnjs.cloudflare.com" and parts[:2] == ["ajax", "libs"] and len(parts) > 4:
        return _NPM_NAMES.get(parts[2], parts[2]), parts[3], "/".join(parts[4:])
    raise ValueError(f"no npm source known for {url}")


class Deps:
    """Local copies of the npm packages asv's pages load, in ``root`` (one folder per
    ``name@version``, as ``npm pack`` unpacked them)."""

    def __init__(self, root: Path, fetch: bool = True) -> None:
        self.root = root
        self.fetch = fetch
        self._lock = threading.Lock()

    def package(self, name: str, version: str) -> Path:
        """The unpacked package, fetched once with ``npm pack`` (if ``fetch``): this version,
        else the newest one of the same major version (``^version``: stupidtable 1.0.1 of
        cdnjs is 1.1.3 on npm)."""
        with self._lock:  # the browser may ask for several files of one package at once
            dest = self.root / f"{name}@{version}".replace("/", "_")
            if (dest / "package").is_dir():
                return dest / "package"
            if not self.fetch:
                raise FileNotFoundError(f"{name}@{version} is not in {self.root}")
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError(
                    f"{name}@{version} is not in {self.root}, and npm (needed once to fetch "
                    "it from the npm registry) is not installed"
                )
            errors = []
            for spec in (f"{name}@{version}", f"{name}@^{version}"):
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
                    tgz[0].unlink()
                    return dest / "package"
                shutil.rmtree(dest, ignore_errors=True)
                errors.append(f"{spec}: {proc.stderr.strip().splitlines()[:1]}")
            raise RuntimeError(
                f"npm pack failed (the npm registry is needed once): {'; '.join(errors)}"
            )

    def local_path(self, url: str) -> str:
        """``name@version/path`` of the file that replaces a CDN URL (npm ships some files
        only unminified, some under ``dist/``)."""
        name, version, path = npm_source(url)
        pkg = self.package(name, version)
        for c in (path, path.replace(".min.", "."), f"dist/{path}"):
            if (pkg / c).is_file():
                return f"{name}@{version}/{c}"
        c = f"dist/{path.replace('.min.', '.')}"
        if (pkg / c).is_file():
            return f"{name}@{version}/{c}"
        raise FileNotFoundError(f"{path} is not in the npm package {name}@{version}")

    def file(self, rel: str) -> Path:
        """The file served at ``DEPS_PREFIX + rel`` (``name@version/path``), inside the
        package folder (relative URLs in CSS, such as bootstrap's fonts, work too)."""
        m = re.fullmatch(r"((?:@[^/]+/)?[^/@]+)@([^/]+)/(.+)", rel)
        if not m:
            raise FileNotFoundError(rel)
        pkg = self.package(m.group(1), m.group(2)).resolve()
        f = (pkg / m.group(3)).resolve()
        if not f.is_relative_to(pkg) or not f.is_file():
            raise FileNotFoundError(rel)
        return f

    def rewrite(self, html: str) -> str:
        """``html`` with its CDN URLs pointing at the local copies. The subresource-integrity
        hashes of the CDN files are dropped: the npm files are the same releases but not the
        same bytes (cdnjs minifies them itself)."""
        html = CDN.sub(lambda m: DEPS_PREFIX + self.local_path(m.group(0)), html)
        return re.sub(r'\s+integrity="[^"]*"', "", html)

    def prepare(self, html_dir: Path) -> list[str]:
        """Fetch (or find) every package the pages in ``html_dir`` load; the problems."""
        problems = []
        for page in sorted(html_dir.glob("*.html")):
            for url in sorted(set(CDN.findall(page.read_text(encoding="utf-8")))):
                try:
                    self.local_path(url)
                except Exception as e:
                    problems.append(f"cannot provide {url} offline: {e}")
        return problems


def _cdn_reachable(timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen("https://code.jquery.com/", timeout=timeout):
            return True
    except Exception:
        return False


def serve(
    directory: Path, deps: Deps | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` (in a daemon thread); with ``deps``, the HTML pages' CDN URLs
    point at the local copies, served under :data:`DEPS_PREFIX`. (server, base URL)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            if deps is not None and path.startswith(DEPS_PREFIX):
                try:
                    f = deps.file(path[len(DEPS_PREFIX) :])
                except Exception as e:
                    self.send_error(404, str(e))
                    return
                self._send(f.read_bytes(), self.guess_type(str(f)))
                return
            if deps is not None and (path.endswith(".html") or path.endswith("/")):
                f = Path(self.translate_path(path))
                if f.is_dir():
                    f = f / "index.html"
                if f.is_file():
                    try:
                        html = deps.rewrite(f.read_text(encoding="utf-8"))
                    except Exception as e:
                        self.send_error(500, f"cannot provide the page's scripts offline: {e}")
                        return
                    self._send(html.encode(), "text/html; charset=utf-8")
                    return
            super().do_GET()

    handler = functools.partial(Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return server, f"http://{shown}:{server.server_address[1]}"


# ------------------------------------------------------------------ regressions page
def regressions(html: Path) -> list[str]:
    """The Regressions page's entries (``regressions.json``), one line each: benchmark with
    parameters, latest / best value, and the commits of each step."""
    f = html / "regressions.json"
    if not f.is_file():
        return []
    data = json.loads(f.read_text())
    index = json.loads((html / "index.json").read_text()) if (html / "index.json").is_file() else {}
    rev = {int(k): v for k, v in index.get("revision_to_hash", {}).items()}
    lines = []
    for name, _path, params, _idx, last, best, jumps in data.get("regressions", []):
        steps = []
        for r1, r2, v1, v2 in jumps:
            a = rev.get(r1, str(r1))[:8] if r1 is not None else None
            b = rev.get(r2, str(r2))[:8]
            steps.append(f"{a}..{b}" if a else b)
            steps[-1] += f" {v2 / v1:.2f}x" if v1 else ""
        branch = params.get("branch", "")
        where = f" @{branch}" if branch else ""
        lines.append(f"{name}{where}: {last / best:.2f}x of best; steps: {', '.join(steps)}")
    return lines


# ------------------------------------------------------------------ headless check
def _regressions_per_branch(html: Path) -> dict[str, int]:
    """Entries of ``regressions.json`` per branch of the dashboard (every published branch,
    0 where it has none; ``""`` when the results name no branch); empty without the file."""
    f = html / "regressions.json"
    if not f.is_file():
        return {}
    index = json.loads((html / "index.json").read_text()) if (html / "index.json").is_file() else {}
    counts = {b: 0 for b in index.get("params", {}).get("branch", []) or [""]}
    for entry in json.loads(f.read_text()).get("regressions", []):
        b = entry[2].get("branch", "") or ""
        counts[b] = counts.get(b, 0) + 1
    return counts


def _rows_ready(n: int):
    """Ready when the shown regressions table has exactly ``n`` rows (one per entry)."""
    return lambda s: s["regression_rows"] == n


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
    state = drv.js(_PAGE_STATE)
    while not ready(state) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = drv.js(_PAGE_STATE)
    return state


def check(
    html: Path, out: Path, timeout: float, benchmark: str | None, deps: Deps | None = None
) -> list[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return ["chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"]
    if not (html / "index.html").exists():
        return [f"{html}/index.html not found: run `asv publish` first"]
    out.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = deps.prepare(html) if deps is not None else []
    server, base = serve(html, deps)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    drv = None
    try:
        drv = WebDriver(driver, chromium, profile)
        name = benchmark or _pick_graph(html)
        expected = _regressions_per_branch(html)
        pages = [
            ("summary", f"{base}/index.html", lambda s: s["canvases"] > 0),
            ("graph", f"{base}/index.html#{name}", lambda s: s["painted"] > 500),
        ]
        for branch in expected:  # one page per branch, each must list its entries
            label = "regressions" + (f"-{branch}" if branch and len(expected) > 1 else "")
            query = f"?branch={urllib.parse.quote(branch)}" if branch else ""
            pages.append(
                (label, f"{base}/index.html#regressions{query}", _rows_ready(expected[branch]))
            )
        for label, url, ready in pages:
            drv.get(url)
            drv.js(_HOOK)
            drv.js("location.reload(); return 0;")
            time.sleep(0.5)
            drv.js(_HOOK)
            state = _wait(drv, ready, timeout)
            shot = out.with_name(f"{out.name}-{label}.png")
            drv.screenshot(shot)
            detail = (
                f"table rows={state['regression_rows']}"
                if label.startswith("regressions")
                else f"canvases={state['canvases']} painted_pixels={state['painted']}"
            )
            print(f"{label}: {url}\n  {detail} title={state['title']!r}\n  screenshot: {shot}")
            if not ready(state):
                problems.append(
                    f"{label} page: not drawn within {timeout:.0f} s ({detail}); "
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
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--serve",
        action="store_true",
        help="serve the dashboard (scripts from the local copies) until Ctrl-C",
    )
    mode.add_argument(
        "--fetch-deps",
        action="store_true",
        help="only fetch the pages' npm packages into --deps-dir (needs npm and its registry)",
    )
    p.add_argument(
        "--html",
        type=Path,
        default=root / ".asv" / "html",
        help="the folder `asv publish` wrote (default .asv/html)",
    )
    p.add_argument("--host", default="127.0.0.1", help="--serve: address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="--serve: port (8080; 0: any free)")
    p.add_argument(
        "--out",
        type=Path,
        default=root / ".asv" / "dashboard",
        help="check: screenshot path prefix: PREFIX-summary.png, PREFIX-graph.png, ...",
    )
    p.add_argument("--benchmark", default=None, help="check: benchmark whose graph page to open")
    p.add_argument("--timeout", type=float, default=30.0, help="check: seconds to wait per page")
    p.add_argument(
        "--deps",
        choices=["auto", "cdn", "npm"],
        default=None,
        help="where the pages' scripts come from: local copies of the npm packages in "
        "--deps-dir (npm; the default of --serve), the CDNs (cdn), or for the check: npm "
        "when the CDNs are unreachable (auto, its default)",
    )
    p.add_argument("--deps-dir", type=Path, default=root / ".asv" / "dashboard-deps")
    args = p.parse_args(argv)
    html = args.html.resolve()
    choice = args.deps or ("npm" if args.serve or args.fetch_deps else "auto")
    deps = None
    if choice == "npm" or (choice == "auto" and not _cdn_reachable()):
        args.deps_dir.mkdir(parents=True, exist_ok=True)
        deps = Deps(args.deps_dir.resolve())
        print(f"scripts: local copies of the npm packages in {deps.root}")
    if not (html / "index.html").is_file():
        print(f"FAIL: {html}/index.html not found: run `asv publish` first", file=sys.stderr)
        return 1

    if args.fetch_deps or args.serve:
        problems = deps.prepare(html) if deps is not None else []
        for pr in problems:
            print(f"FAIL: {pr}", file=sys.stderr)
        if problems:
            return 1
        if args.fetch_deps:
            print(f"dashboard scripts ready in {deps.root}" if deps else "nothing to fetch")
            return 0
        if deps is not None:
            deps.fetch = False  # everything is local now: serving never calls npm
        server, base = serve(html, deps, args.host, args.port)
        print(f"serving {html} at {base}/  (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
        return 0

    problems = check(html, args.out.resolve(), args.timeout, args.benchmark, deps)
    entries = regressions(html)
    print(f"Regressions page: {len(entries)} entries")
    for line in entries:
        print(f"  {line}")
    for pr in problems:
        print(f"FAIL: {pr}", file=sys.stderr)
    if not problems:
        print("dashboard OK: graphs drawn, no JavaScript errors")
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
