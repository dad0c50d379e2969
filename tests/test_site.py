"""The course website (``make site``), opened in Chromium with every request outside the site blocked.

The module builds the site once with Sphinx + MyST-NB (notebooks run through the jupyter-cache in
``build/site-cache``, so a rebuild reruns only what changed), serves it on 127.0.0.1 and checks: no
URL outside the site in any page, script, style or font; every page loads with no failed request and
no console error; every internal link and anchor resolves; every image decodes and has alt text;
search finds each lesson; each lesson page shows the outputs of its executed notebook; the explorer
answers to the mouse with no kernel; pages reflow at 200 % zoom; explorer colours keep their order
under red–green colour blindness. Screenshots land in ``artifacts/site/``.

``make test`` builds a subset (the index, lesson 01 and the explorer demo) into ``build/site-test``;
with ``MHACOURSE_SITE_FULL=1`` (``.ci/run``) it builds and checks the whole site in ``site/``.
"""

import contextlib
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urldefrag

import pytest

from tests.browser_harness import CHROMIUM, CHROMIUM_FLAGS, require_browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "site"
FULL = os.environ.get("MHACOURSE_SITE_FULL", "") not in ("", "0")
SUBSET = ["notebooks/01_attention_one_head", "notebooks/demo_attention_explorer"]
LESSONS = {  # page -> a term that lesson teaches (searched for on the site)
    "notebooks/00_mlx_primer": "lazy",
    "notebooks/01_attention_one_head": "softmax",
    "notebooks/02_many_heads": "merge_heads",
    "notebooks/03_masks": "padding",
    "notebooks/04_custom_dims": "cross-attention",
    "notebooks/05_fused_kernel": "grouped-query",
    "notebooks/06_dropin_parity": "in_proj_weight",
    "notebooks/07_positions": "RoPE",
    "notebooks/08_capstone": "capstone",
    "notebooks/09_trained_heads": "induction",
    "notebooks/demo_attention_explorer": "presenter",
}
# Warnings a subset build must give (pages left out of it); a full build gives none at all.
SUBSET_WARNINGS = re.compile(r"toctree contains reference to (nonexisting|excluded) document|"
                             r"Unknown source document '[^']*(notebooks|exercises|practice)/")
MAX_PAGE_KB = 6144  # the bound the build enforces (MHACOURSE_SITE_MAX_PAGE_KB in docs/_ext/mha_site.py)


def test_every_lesson_and_exercise_notebook_is_on_the_site():
    # A new lesson added to notebooks/ but not to docs/index.md only warns at build time, and the
    # fast lane builds a subset: catch it here, without Sphinx.
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^((?:notebooks|exercises|practice)/\S+)$", index, flags=re.M))
    for folder in ("notebooks", "exercises"):
        for notebook in sorted((ROOT / folder).glob("*.ipynb")):
            assert f"{folder}/{notebook.stem}" in listed, f"{folder}/{notebook.name} is in no toctree of docs/index.md"
    for notebook in sorted((ROOT / "exercises").glob("*.ipynb")):
        lesson = notebook.stem[:2]
        assert f"practice/{lesson}" in listed and (ROOT / "docs" / "practice" / f"{lesson}.md").is_file()
    assert set(LESSONS) == {f"notebooks/{n.stem}" for n in (ROOT / "notebooks").glob("*.ipynb")}


def build_site(outdir, only=None, fresh=False):
    """Build with ``sphinx-build`` (in a child process, the BLAS preloaded as ``make site`` does);
    ``fresh``: read every page again (``-E``), executing what the cache lacks.

    Returns ``(seconds, warnings)``."""
    pytest.importorskip("myst_nb", reason="the site extra is not installed: pip install -e '.[site]'")
    env = dict(os.environ, MHACOURSE_SITE_ONLY=",".join(only or []))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    doctrees = ROOT / "build" / (outdir.name + "-doctrees")
    command = [sys.executable, str(ROOT / "mhacourse" / "blas.py"), "exec", "--",
               sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(doctrees),
               str(ROOT / "docs"), str(outdir)] + (["-E"] if fresh else [])
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    warnings = [line for line in done.stderr.splitlines()
                if re.search(r"(^|: )(WARNING|ERROR|CRITICAL|SEVERE): ", line)]
    return seconds, warnings


@pytest.fixture(scope="module")
def site():
    """The built site: ``(folder, pages)``, pages as paths relative to it."""
    require_browser()
    outdir = ROOT / "site" if FULL else ROOT / "build" / "site-test"
    only = None if FULL else SUBSET
    seconds, warnings = build_site(outdir, only)
    if not all(_in_cache(page) for page in (only or LESSONS)):
        # Pages built before the cache was emptied: Sphinx sees nothing to do, so read them again.
        seconds, warnings = build_site(outdir, only, fresh=True)
    unexpected = [w for w in warnings if FULL or not SUBSET_WARNINGS.search(w)]
    assert not unexpected, "\n".join(unexpected)
    print(f"site built in {seconds:.1f} s -> {outdir}")
    pages = sorted(p.relative_to(outdir).as_posix() for p in outdir.rglob("*.html")
                   if not p.relative_to(outdir).as_posix().startswith(("_static/", "_sources/")))
    return outdir, pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Browser:
    """One Chromium page; records every failure: blocked or failed requests, HTTP errors, console errors."""

    def __init__(self, context, base):
        self.context, self.base = context, base
        self.problems = []
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.problems.append(f"blocked request outside the site: {url}")
            route.abort()

    def open(self, path):
        self.problems.clear()
        self.page.goto(self.base + path, wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self.page


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    folder, _ = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve(folder) as base, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("site-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            yield Browser(context, base)
        finally:
            context.close()


# -- the files themselves ------------------------------------------------------------------------

EXTERNAL = [
    (re.compile(r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=[\"']?(?:https?:)?//", re.I), "src"),
    (re.compile(r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//", re.I), "link"),
    (re.compile(r"url\(\s*[\"']?(?:https?:)?//", re.I), "css url()"),
    (re.compile(r"@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//", re.I), "@import"),
    (re.compile(r"""(?:import\s*\(|from\s+)[\"'](?:https?:)?//""", re.I), "JS import"),
]


def test_nothing_is_loaded_from_outside_the_site(site):
    folder, pages = site
    assert "index.html" in pages and "search.html" in pages
    found = []
    for path in folder.rglob("*"):
        if path.suffix in (".html", ".css", ".js", ".mjs") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern, what in EXTERNAL:
                found += [f"{path.relative_to(folder)}: {what}: {m.group(0)[:120]}" for m in pattern.finditer(text)]
    assert not found, "\n".join(found[:20])


def test_every_page_is_within_its_weight_bound(site):
    folder, pages = site
    weights = json.loads((ROOT / "build" / f"{folder.name}-weights.json").read_text())["pages"]
    assert set(weights) == {p for p in pages}
    heaviest = max(weights, key=lambda p: weights[p]["bytes"])
    print(f"heaviest page: {heaviest}, {weights[heaviest]['bytes'] / 1e3:.0f} kB "
          f"(html {weights[heaviest]['html'] / 1e3:.0f} kB)")
    assert weights[heaviest]["bytes"] <= MAX_PAGE_KB * 1024
    # The demo's long explorer (3 layers x 8 heads x 256 x 256) is fetched only when scrolled to.
    demo = weights["notebooks/demo_attention_explorer.html"]
    assert demo["html"] < 1_000_000 and demo["explorer data"] > 1_000_000, demo


# -- in the browser ------------------------------------------------------------------------------

def test_pages_load_cleanly_and_links_anchors_and_images_resolve(site, browser):
    folder, pages = site
    ids, links, problems = {}, [], []
    for path in pages:
        page = browser.open(path)
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        bad_images = page.evaluate("""async () => {
            const bad = [];
            for (const img of document.images) {
                img.loading = "eager";
                try { await img.decode(); } catch (e) { bad.push("undecodable " + img.src); continue; }
                if (!img.naturalWidth) bad.push("empty " + img.src);
                if (!(img.getAttribute("alt") || "").trim()) bad.push("no alt text " + img.src);
            }
            return bad;
        }""")
        page.wait_for_load_state("networkidle")
        ids[path] = set(page.evaluate(
            "() => [...document.querySelectorAll('[id]')].map(e => e.id)"
            ".concat([...document.querySelectorAll('a[name]')].map(a => a.name))"))
        links += [(path, href) for href in page.evaluate(
            "() => [...document.querySelectorAll('a[href]')].map(a => a.href)")]
        problems += [f"{path}: {p}" for p in browser.problems + bad_images]
    assert not problems, "\n".join(problems[:30])

    checked, broken = set(), []
    for source, href in links:
        if not href.startswith(browser.base):
            continue  # a reference to a public page (further reading): a link, never loaded
        url, fragment = urldefrag(href)
        target = url[len(browser.base):].split("?")[0] or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if target in ids:
            if fragment and fragment not in ids[target]:
                broken.append(f"{source}: #{fragment} not in {target}")
        elif target not in checked:
            checked.add(target)
            if not (folder / target).is_file():
                broken.append(f"{source}: {href} is not in the site")
    assert not broken, "\n".join(sorted(set(broken))[:30])
    # Every notebook page links its notebook for download, and the link works.
    for path in pages:
        if path.startswith(("notebooks/", "exercises/")):
            assert (folder / "_sources" / path.replace(".html", ".ipynb")).is_file(), path
            assert (source_link := f"_sources/{path.replace('.html', '.ipynb')}") and any(
                s == path and h.endswith(source_link) for s, h in links), f"{path}: no download link"


def _in_cache(docname):
    import nbformat
    from jupyter_cache import get_cache

    notebook = nbformat.read(ROOT / (docname + ".ipynb"), as_version=4)
    try:
        get_cache(ROOT / "build" / "site-cache").match_cache_notebook(notebook)
    except KeyError:
        return False
    return True


def _executed_outputs(docname):
    """(cells with outputs, image outputs shown) of the notebook as jupyter-cache executed it."""
    import nbformat
    from jupyter_cache import get_cache

    notebook = nbformat.read(ROOT / (docname + ".ipynb"), as_version=4)
    _, merged = get_cache(ROOT / "build" / "site-cache").merge_match_into_notebook(notebook)
    cells = [c for c in merged.cells if c.cell_type == "code" and c.outputs]
    images = sum(1 for c in cells for o in c.outputs
                 if "image/png" in o.get("data", {}) and
                 "application/vnd.jupyter.widget-view+json" not in o.get("data", {}))
    return len(cells), images


def test_each_lesson_shows_its_executed_outputs(site, browser):
    folder, pages = site
    lessons = [p for p in LESSONS if p + ".html" in pages]
    assert len(lessons) == (len(LESSONS) if FULL else len(SUBSET))
    for docname in lessons:
        cells, images = _executed_outputs(docname)
        page = browser.open(docname + ".html")
        shown = page.evaluate("""() => ({
            outputs: document.querySelectorAll('div.cell_output').length,
            images: document.querySelectorAll('div.cell_output img').length,
            explorers: document.querySelectorAll('.mha-site-explorer').length,
            runIt: document.querySelector('.mha-run-it')?.innerText || ''})""")
        assert cells > 0 and shown["outputs"] == cells, (docname, shown, cells)
        assert shown["images"] == images, (docname, shown, images)
        assert "make lab" in shown["runIt"] and "mhacourse start" in shown["runIt"], shown["runIt"]
        assert not browser.problems, browser.problems
    page = browser.open("notebooks/01_attention_one_head.html")
    page.screenshot(path=str(ARTIFACTS / "lesson_01.png"), full_page=False)


def test_search_finds_every_lesson(site, browser):
    _, pages = site
    for docname, term in LESSONS.items():
        if docname + ".html" not in pages:
            continue
        page = browser.open(f"search.html?q={quote(term)}")
        page.wait_for_selector("#search-results .search-summary", timeout=30_000)
        hits = page.evaluate("() => [...document.querySelectorAll('#search-results ul.search li a')]"
                             ".map(a => a.getAttribute('href'))")
        assert any(h.split("#")[0].split("?")[0] == docname + ".html" for h in hits), (term, hits)
        assert not browser.problems, browser.problems
        if docname == "notebooks/01_attention_one_head":
            page.screenshot(path=str(ARTIFACTS / "search.png"))


EXPLORER = "(k) => document.querySelectorAll('.mha-site-explorer .mha-explorer')[k].parentElement.mhaExplorer"


def _cell_centre(page, k, i, j):
    return page.evaluate(
        f"""([k, i, j]) => {{
            const e = ({EXPLORER})(k), box = e.geo.boxes[0], w = e.geo.win;
            const r = e.overlay.getBoundingClientRect();
            return [r.left + box.x + (j - w.c0 + 0.5) * box.w / w.cols,
                    r.top + box.y + (i - w.r0 + 0.5) * box.h / w.rows];
        }}""", [k, i, j])


def test_the_explorer_answers_to_the_mouse_without_a_kernel(site, browser):
    page = browser.open("notebooks/demo_attention_explorer.html")
    count = page.locator(".mha-site-explorer").count()
    assert count == 4  # main, long input (fetched when scrolled to), compare, stepper
    for k in range(count):
        page.locator(".mha-site-explorer").nth(k).scroll_into_view_if_needed()
        page.wait_for_function(f"document.querySelectorAll('.mha-site-explorer')[{k}].dataset.mounted === 'yes'",
                               timeout=30_000)
    page.wait_for_load_state("networkidle")
    main = page.locator(".mha-site-explorer .mha-explorer").first
    main.scroll_into_view_if_needed()
    assert "scale and mask need the Python kernel" in main.inner_text()
    page.mouse.move(*_cell_centre(page, 0, 3, 2))
    assert main.get_attribute("data-query") == "3"
    bars_3 = main.locator(".mha-bars").inner_text()
    page.mouse.move(*_cell_centre(page, 0, 7, 5))
    assert main.get_attribute("data-query") == "7"
    bars_7 = main.locator(".mha-bars").inner_text()
    assert "query 3" in bars_3 and "query 7" in bars_7 and bars_3 != bars_7
    # Views and heads switch in the page: the lines view draws, head 4 looks at the first token.
    main.locator("button[data-view=lines]").click()
    assert page.evaluate(f"() => ({EXPLORER})(0).view") == "lines"
    main.locator("button[data-view=heatmap]").click()
    main.screenshot(path=str(ARTIFACTS / "explorer.png"))
    page.screenshot(path=str(ARTIFACTS / "explorer_page.png"))
    assert not browser.problems, browser.problems


def test_explorer_colours_keep_their_order_for_red_green_colour_blindness(site, browser):
    """The weights' colour map (viridis) must stay ordered by lightness, in full colour and as seen
    with protanopia and deuteranopia (Machado et al. 2009, severity 1): no red-green contrast is
    needed to read a weight."""
    page = browser.open("notebooks/demo_attention_explorer.html")
    page.wait_for_function("document.querySelector('.mha-site-explorer').dataset.mounted === 'yes'")
    colours = page.evaluate(f"() => Array.from(({EXPLORER})(0).meta.colormap)")
    rgb = [colours[i:i + 3] for i in range(0, len(colours), 3)]
    assert len(rgb) == 256
    simulations = {
        "normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                       (-0.003882, -0.048116, 1.051998)),
        "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                         (-0.011820, 0.042940, 0.968881)),
    }

    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    for name, matrix in simulations.items():
        luminance = []
        for colour in rgb[::8] + [rgb[-1]]:
            lin = [linear(c) for c in colour]
            seen = [max(0.0, min(1.0, sum(m * v for m, v in zip(row, lin)))) for row in matrix]
            luminance.append(0.2126 * seen[0] + 0.7152 * seen[1] + 0.0722 * seen[2])
        assert all(b > a for a, b in zip(luminance, luminance[1:])), (name, luminance)
        assert luminance[-1] / luminance[0] > 5, name  # ends far apart (contrast ratio)


def test_pages_reflow_at_200_percent_zoom(site, browser):
    """At 200 % zoom a 1280-pixel window is 640 CSS pixels wide: nothing may widen the page itself
    (code, outputs and explorers scroll inside their own boxes)."""
    page = browser.page
    try:
        page.set_viewport_size({"width": 640, "height": 900})
        for path in ["index.html", "notebooks/01_attention_one_head.html",
                     "notebooks/demo_attention_explorer.html"]:
            browser.open(path)
            page.wait_for_timeout(300)
            widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1] + 1, (path, widths)
            size = page.evaluate("() => parseFloat(getComputedStyle("
                                 "document.querySelector('div.cell_input pre, main p')).fontSize)")
            assert size >= 12, (path, size)
            if path == "notebooks/01_attention_one_head.html":
                page.screenshot(path=str(ARTIFACTS / "lesson_01_zoom_200.png"))
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_index_shows_the_course_path(site, browser):
    page = browser.open("index.html")
    steps = page.locator("ol.mha-course-path > li")
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert steps.count() == len(lessons) >= 10
    text = page.locator("ol.mha-course-path").inner_text()
    assert "00 · MLX primer" in text and "capstone" in text and "stage 2" in text
    assert page.locator("text=Install and run").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    # Previous / next and the sidebar: the first lesson links on to the next page.
    page = browser.open("notebooks/00_mlx_primer.html" if FULL else "notebooks/01_attention_one_head.html")
    assert page.locator(".prev-next-area a").count() >= 1
    assert page.locator("nav.bd-docs-nav a").count() >= 3
    assert page.locator(".bd-sidebar-secondary .page-toc a").count() >= 3  # in-page headings
    assert not browser.problems, browser.problems
