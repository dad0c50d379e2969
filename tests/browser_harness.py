"""JupyterLab and Debian's Chromium under Playwright, for the browser test and benchmark.

:func:`lab_server` starts JupyterLab on 127.0.0.1 with a token, in private
Jupyter folders, serving a work folder; :func:`chromium` opens a headless
Chromium with a fresh profile. :func:`open_and_run` opens a notebook and runs
every cell. ``COMM_COUNTER`` is a page script that counts the ``comm_msg``
messages the page sends to the kernel.

Needs Chromium at /usr/bin/chromium (``apt-get install -y chromium``) and PyPI
``playwright`` (never ``playwright install``).
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MHACOURSE_CHROMIUM", "/usr/bin/chromium")
TOKEN = "mhacourse-browser-test"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_HINT = ("the browser test needs Chromium at /usr/bin/chromium (Debian/Ubuntu: "
                "`apt-get install -y chromium`) and `pip install playwright` "
                "(no `playwright install` needed)")

# Counts what the page sends to the kernel over the websocket; comm_msg = a widget message.
COMM_COUNTER = """
(() => {
  window.__mhaSent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    let text = "";
    try {
      text = typeof data === "string" ? data
        : new TextDecoder().decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (error) { text = ""; }
    const type = (text.match(/"msg_type":\\s*"([a-z_]+)"/) || [])[1] || "?";
    window.__mhaSent.push(type);
    return send.call(this, data);
  };
})();
"""


def missing_browser():
    """Why the browser cannot run here, or ``None``."""
    missing = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"no Chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed")
    return "; ".join(missing) + " -- " + INSTALL_HINT if missing else None


def require_browser():
    """Skip the calling test without a browser; fail it instead where ``CI`` is set."""
    import pytest

    reason = missing_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab_server(work, home):
    """JupyterLab serving ``work``, its settings in ``home``; yields the base URL."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[name] = str(home / name.lower())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    settings = home / "jupyter_config_dir" / "lab" / "user-settings" / "@jupyterlab"
    for extension, name, value in (
        ("apputils-extension", "notification", {"fetchNews": "false"}),  # no "Jupyter news" pop-up
        ("notebook-extension", "tracker", {"windowingMode": "none"}),  # every cell stays in the page
    ):
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    port = _free_port()
    log_path = home / "lab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
             "--allow-root", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
             "--ServerApp.open_browser=False"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise RuntimeError("JupyterLab did not start:\n" + log_path.read_text()[-3000:]) from None
                    time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


@contextlib.contextmanager
def chromium(profile, downloads=True):
    """A headless Chromium (Playwright persistent context) with a fresh profile; yields the context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1200}, accept_downloads=downloads,
        )
        try:
            yield context
        finally:
            context.close()


def open_and_run(context, url, notebook, timeout=60_000, new_page=False):
    """Open ``notebook`` in Lab (in the first tab, or a new one), wait for an idle kernel, Run All; returns the page."""
    page = context.pages[0] if context.pages and not new_page else context.new_page()
    page.add_init_script(COMM_COUNTER)
    page.set_default_timeout(30_000)
    page.goto(f"{url}/lab/tree/{notebook}?token={TOKEN}")
    # Run All before the kernel is idle silently does nothing.
    page.wait_for_function("document.body.innerText.includes('| Idle')", timeout=timeout)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    return page


def sent_to_kernel(page):
    """The ``msg_type`` of every message the page has sent to the kernel so far."""
    return page.evaluate("window.__mhaSent.slice()")
