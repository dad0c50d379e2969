"""End to end: the demo notebook in JupyterLab, in a real Chromium, driven by Playwright.

JupyterLab serves a copy of ``notebooks/demo_attention_explorer.ipynb`` on
127.0.0.1 with a token; Chromium opens it, runs every cell, moves the head
selector and the scale slider, and the test checks that the picture (its PNG
bytes) and the numbers on the page changed. Screenshots go to
``artifacts/browser/``.

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``)
and PyPI ``playwright`` (never ``playwright install``). Where the environment
variable ``CI`` is set, a missing browser fails the test; elsewhere it skips.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "demo_attention_explorer.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("MHACOURSE_CHROMIUM", "/usr/bin/chromium")
TOKEN = "mhacourse-browser-test"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_HINT = ("the browser test needs Chromium at /usr/bin/chromium (Debian/Ubuntu: "
                "`apt-get install -y chromium`) and `pip install playwright` "
                "(no `playwright install` needed)")


def _require_browser():
    missing = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"no Chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed")
    if missing:
        message = "; ".join(missing) + " -- " + INSTALL_HINT
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of the demo notebook; yields its base URL."""
    _require_browser()
    home = tmp_path / "jupyter"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # Lab autosaves: never touch the committed file
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[name] = str(home / name.lower())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    settings = home / "jupyter_config_dir" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "Jupyter news" pop-up over the widgets.
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))

    port = _free_port()
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
         "--allow-root", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
         "--ServerApp.open_browser=False"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.2)
        yield url, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


IMAGE = ".mha-explorer img.widget-image"
TITLE = ".mha-explorer .mha-title"
NUMBERS = ".mha-explorer .mha-numbers"


def _image_digest(page):
    """SHA-256 of the PNG bytes currently shown by the explorer's image."""
    return page.evaluate(
        """async (selector) => {
            const img = document.querySelector(selector);
            const bytes = await (await fetch(img.src)).arrayBuffer();
            const digest = await crypto.subtle.digest('SHA-256', bytes);
            return Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
        }""",
        IMAGE,
    )


def _wait_for_text(page, selector, pattern, timeout=15_000):
    """Wait until the element's text matches ``pattern``; fail saying what it shows instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "([selector, pattern]) => { const el = document.querySelector(selector);"
            " return el !== null && new RegExp(pattern).test(el.innerText); }",
            arg=[selector, pattern], timeout=timeout,
        )
    except PlaywrightTimeout:
        shown = page.inner_text(selector) if page.query_selector(selector) else "(not on the page)"
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        pytest.fail(f"after {timeout / 1000:.0f} s, {selector} shows {shown!r}, not /{pattern}/: "
                    "the widget did not update")
    return page.inner_text(selector)


def test_demo_explorer_reacts_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    url, tmp_path = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1600, "height": 1200},
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={TOKEN}")
            # Run All before the kernel is idle silently does nothing.
            page.wait_for_function("document.body.innerText.includes('| Idle')", timeout=30_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

            # The last cell sets the mask from code: once the title says so, every cell ran.
            title = _wait_for_text(page, TITLE, "mask: causal", timeout=30_000)
            assert "head 0" in title
            page.locator(".mha-explorer").scroll_into_view_if_needed()
            before = {"image": _image_digest(page), "title": title, "numbers": page.inner_text(NUMBERS)}
            page.locator(".mha-explorer").screenshot(path=str(ARTIFACTS / "1_after_run_all.png"))

            # The head selector: click head 3.
            head_buttons = page.locator(".mha-explorer .widget-toggle-buttons").first
            head_buttons.locator("button", has_text=re.compile(r"^3$")).click()
            title = _wait_for_text(page, TITLE, "head 3")
            after_head = {"image": _image_digest(page), "title": title, "numbers": page.inner_text(NUMBERS)}
            page.locator(".mha-explorer").screenshot(path=str(ARTIFACTS / "2_head_3.png"))
            assert after_head["image"] != before["image"], "the heatmap did not change with the head"
            assert after_head["numbers"] != before["numbers"]

            # The scale slider, with the keyboard: focus its handle, press ArrowRight.
            slider = page.locator(".mha-explorer .widget-hslider", has_text="scale").first
            readout_before = slider.locator(".widget-readout").inner_text()
            slider.locator(".noUi-handle").focus()
            for _ in range(10):
                page.keyboard.press("ArrowRight")
            readout_after = slider.locator(".widget-readout").inner_text()
            assert float(readout_after) > float(readout_before), (readout_before, readout_after)
            title = _wait_for_text(page, TITLE, rf"scale {re.escape(readout_after)}")
            after_scale = {"image": _image_digest(page), "title": title, "numbers": page.inner_text(NUMBERS)}
            page.locator(".mha-explorer").screenshot(path=str(ARTIFACTS / "3_scale_up.png"))
            page.screenshot(path=str(ARTIFACTS / "4_full_page.png"), full_page=True)
            assert after_scale["image"] != after_head["image"], "the heatmap did not change with the scale"
            # A larger scale sharpens the weights: the chosen row's largest weight grows.
            row_max = [float(re.search(r"this row: max ([0-9.]+)", d["numbers"]).group(1))
                       for d in (after_head, after_scale)]
            assert row_max[1] > row_max[0], row_max
        finally:
            browser.close()
