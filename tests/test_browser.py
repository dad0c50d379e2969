"""End to end: the explorer in JupyterLab, in a real Chromium, driven by Playwright.

One JupyterLab server and one browser for the whole module. JupyterLab serves
a copy of ``notebooks/demo_attention_explorer.ipynb``; Chromium runs every
cell, then each test drives one part of the explorers the demo shows: hover,
head/layer/view switches (counting the messages sent to the kernel), the
lines view, PNG and SVG export, compare and the stepper. A last test opens a
``save_html`` page from disk with the network blocked. Screenshots go to
``artifacts/browser/``.

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``)
and PyPI ``playwright`` (never ``playwright install``). Where the environment
variable ``CI`` is set, a missing browser fails the test; elsewhere it skips.
"""

import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest

from tests.browser_harness import chromium, lab_server, open_and_run, require_browser, sent_to_kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "demo_attention_explorer.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
EXPLORERS = 4  # main, long input, compare, stepper

# The i-th explorer's JavaScript object (render() leaves it on the widget's element).
JS_EXPLORER = "(k) => document.querySelectorAll('.mha-explorer')[k].parentElement.mhaExplorer"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The demo notebook, run in JupyterLab in Chromium; yields ``(page, context, tmp)``."""
    require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    work, home = tmp / "work", tmp / "jupyter"
    work.mkdir()
    home.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # Lab autosaves: never touch the committed file
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with lab_server(work, home) as url, chromium(tmp / "profile") as context:
        page = open_and_run(context, url, NOTEBOOK.name)
        try:
            # Every explorer drawn, and the cell that sets the mask from code has run.
            page.wait_for_function(
                f"document.querySelectorAll('.mha-explorer[data-draws]').length === {EXPLORERS}"
                " && document.querySelector('.mha-explorer .mha-title').innerText.includes('mask: causal')",
                timeout=120_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        yield page, context, tmp


def explorer(page, k):
    """The k-th explorer's root element (0: main, 1: long input, 2: compare, 3: stepper)."""
    return page.locator(".mha-explorer").nth(k)


def comm_messages(page):
    return sum(1 for kind in sent_to_kernel(page) if kind == "comm_msg")


def cell_centre(page, k, i, j, box=0):
    """Page coordinates of cell (query i, key j) in the k-th explorer's box."""
    return page.evaluate(
        f"""([k, i, j, b]) => {{
            const e = ({JS_EXPLORER})(k), g = e.geo, box = g.boxes[b], w = g.win;
            const r = e.overlay.getBoundingClientRect();
            return [r.left + box.x + (j - w.c0 + 0.5) * box.w / w.cols,
                    r.top + box.y + (i - w.r0 + 0.5) * box.h / w.rows];
        }}""", [k, i, j, box])


def canvas_colours(page, k, canvas="base"):
    """How many distinct colours the k-th explorer's canvas holds (a blank canvas has 1)."""
    return page.evaluate(
        f"""([k, which]) => {{
            const c = ({JS_EXPLORER})(k)[which];
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let p = 0; p < data.length; p += 4 * 7)
                seen.add((data[p] << 16) | (data[p + 1] << 8) | data[p + 2] | (data[p + 3] << 24));
            return seen.size;
        }}""", [k, canvas])


def canvas_digest(page, k):
    return page.evaluate(f"(k) => ({JS_EXPLORER})(k).base.toDataURL().length + ':' + "
                         f"({JS_EXPLORER})(k).base.toDataURL().slice(-200)", k)


def outlined(page, k, i):
    """Whether the red outline runs along the top edge of row ``i`` in the k-th explorer's overlay."""
    return page.evaluate(
        f"""([k, i]) => {{
            const e = ({JS_EXPLORER})(k), box = e.geo.boxes[0], w = e.geo.win;
            const y = Math.round(box.y + (i - w.r0) * box.h / w.rows - 1);
            const d = e.overlay.getContext('2d').getImageData(Math.round(box.x + 3), y - 1, 1, 3).data;
            return [0, 4, 8].some((p) => d[p] > 200 && d[p + 1] < 120 && d[p + 3] > 0);
        }}""", [k, i])


def test_hover_moves_the_highlighted_row_and_the_bars(lab):
    page, _, _ = lab
    main = explorer(page, 0)
    main.scroll_into_view_if_needed()
    main.locator("button[data-view=heatmap]").click()
    page.mouse.move(*cell_centre(page, 0, 3, 2))
    assert main.get_attribute("data-query") == "3"
    assert outlined(page, 0, 3) and not outlined(page, 0, 7)
    bars_3 = main.locator(".mha-bars").inner_text()
    assert "query 3 “on”" in bars_3
    main.screenshot(path=str(ARTIFACTS / "1_hover_query_3.png"))

    page.mouse.move(*cell_centre(page, 0, 7, 5))
    assert main.get_attribute("data-query") == "7"
    assert outlined(page, 0, 7) and not outlined(page, 0, 3)
    bars_7 = main.locator(".mha-bars").inner_text()
    assert "query 7 “the”" in bars_7 and bars_7 != bars_3
    # The number on hover is the bar's value for that key.
    value = float(main.locator(".mha-bar-row", has_text="5: mat").locator(".mha-value").inner_text())
    tip = main.locator(".mha-tip").inner_text()
    assert tip.startswith("the → mat: ") and abs(float(tip.split(": ")[1]) - value) <= 6e-4, (tip, value)
    main.screenshot(path=str(ARTIFACTS / "2_hover_query_7.png"))


def test_heads_layers_and_views_need_no_kernel_message(lab):
    page, _, _ = lab
    main, long = explorer(page, 0), explorer(page, 1)
    before = comm_messages(page)
    main.scroll_into_view_if_needed()
    main.locator("button.mha-head", has_text="3").first.click()
    assert main.get_attribute("data-head") == "3"
    assert "head 3" in main.locator(".mha-title").inner_text()
    for view in ("lines", "grid", "heatmap"):
        main.locator(f"button[data-view={view}]").click()
        assert main.get_attribute("data-view") == view
    main.locator("button[data-view=grid]").click()
    # Click the thumbnail of head 5: the heatmap of head 5 opens.
    page.evaluate(f"""(k) => {{
        const e = ({JS_EXPLORER})(k), g = e.gridGeo, r = e.overlay.getBoundingClientRect();
        const x = r.left + g.left + 5 * (g.thumb + 6) + g.thumb / 2, y = r.top + g.top + g.thumb / 2;
        e.overlay.dispatchEvent(new MouseEvent('click', {{clientX: x, clientY: y, bubbles: true}}));
    }}""", 0)
    assert main.get_attribute("data-view") == "heatmap" and main.get_attribute("data-head") == "5"
    long.scroll_into_view_if_needed()
    long.locator("select.mha-layer").select_option("2")
    assert long.get_attribute("data-layer") == "2"
    long.locator("button[data-view=grid]").click()
    long.screenshot(path=str(ARTIFACTS / "3_long_input_grid.png"))
    long.locator("button[data-view=heatmap]").click()
    long.locator("button", has_text="+").click()
    long.locator("button", has_text="+").click()
    window = long.get_attribute("data-window").split(",")
    assert int(window[2]) < 256 and int(window[3]) < 256, window  # zoomed in
    long.screenshot(path=str(ARTIFACTS / "4_long_input_zoomed.png"))
    page.wait_for_timeout(300)
    assert comm_messages(page) == before, sent_to_kernel(page)[-10:]

    # The scale needs new weights: that, and only that, goes to the kernel.
    main.scroll_into_view_if_needed()
    revision, picture = main.get_attribute("data-revision"), canvas_digest(page, 0)
    main.locator("input.mha-scale").evaluate(
        "(el) => { el.value = Number(el.max) * 0.9; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_function("([k, r]) => document.querySelectorAll('.mha-explorer')[k].dataset.revision !== r",
                           arg=[0, revision], timeout=20_000)
    assert comm_messages(page) > before
    assert canvas_digest(page, 0) != picture, "the heatmap did not change with the scale"
    main.screenshot(path=str(ARTIFACTS / "5_scale_up.png"))


def test_lines_view_draws(lab):
    page, _, _ = lab
    main = explorer(page, 0)
    main.scroll_into_view_if_needed()
    main.locator("button[data-view=lines]").click()
    assert main.get_attribute("data-lines") == "drawn"
    assert canvas_colours(page, 0, "base") > 20  # labels and lines of many opacities
    assert canvas_colours(page, 0, "overlay") > 5  # the selected query's lines
    main.screenshot(path=str(ARTIFACTS / "6_lines.png"))
    main.locator("button[data-view=heatmap]").click()


def test_export_downloads_a_png_and_an_svg(lab):
    page, _, _ = lab
    main = explorer(page, 0)
    main.scroll_into_view_if_needed()
    with page.expect_download() as png:
        main.locator("button.mha-png").click()
    png_path = ARTIFACTS / png.value.suggested_filename
    png.value.save_as(png_path)
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png_path.stat().st_size > 5_000
    with page.expect_download() as svg:
        main.locator("button.mha-svg").click()
    svg_path = ARTIFACTS / svg.value.suggested_filename
    svg.value.save_as(svg_path)
    text = svg_path.read_text()
    assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
    assert text.count("<rect") >= 11 * 11 and ">cat<" in text  # every cell and the token labels


def test_compare_and_stepper_render(lab):
    page, _, _ = lab
    compare, stepper = explorer(page, 2), explorer(page, 3)
    compare.scroll_into_view_if_needed()
    assert compare.get_attribute("data-kind") == "compare"
    assert "largest |yours − reference|" in compare.locator(".mha-numbers").inner_text()
    for box in range(3):  # yours, reference, difference: all drawn
        x, y = cell_centre(page, 2, 4, 4, box)
        page.mouse.move(x, y)
        assert "difference" in compare.locator(".mha-tip").inner_text()
    assert canvas_colours(page, 2) > 20
    compare.screenshot(path=str(ARTIFACTS / "7_compare.png"))

    stepper.scroll_into_view_if_needed()
    assert stepper.get_attribute("data-kind") == "stepper"
    stepper.locator("button", has_text="1 scores").click()
    assert "shape (L_q, L_k) = (11, 11)" in stepper.locator(".mha-numbers").inner_text()
    stepper.screenshot(path=str(ARTIFACTS / "8_stepper_scores.png"))
    stepper.locator("button", has_text="5 weights @ V").click()
    assert "shape (L_q, D_v) = (11, 16)" in stepper.locator(".mha-numbers").inner_text()
    assert canvas_colours(page, 3) > 20
    stepper.screenshot(path=str(ARTIFACTS / "9_stepper_output.png"))


def test_static_pictures_are_kept_but_hidden_where_the_widget_runs(lab):
    page, _, _ = lab
    # The last cell's picture follows its widget: wait for all of them.
    page.wait_for_function(f"document.querySelectorAll('img.mha-static-picture').length === {EXPLORERS}")
    pictures = page.evaluate("""() => [...document.querySelectorAll('img.mha-static-picture')].map(img => ({
        alt: img.alt, height: img.getBoundingClientRect().height,
        output: img.closest('.jp-OutputArea-child').getBoundingClientRect().height}))""")
    assert len(pictures) == EXPLORERS, pictures  # one under each explorer, for nbconvert and nbviewer
    assert all(p["height"] == 0 and p["output"] == 0 for p in pictures), pictures  # explorer.css hides them
    assert all(p["alt"].startswith("Attention explorer") for p in pictures)
    # The cell after the explorer set its mask from Python: the picture above was redrawn to match.
    assert "mask: causal" in pictures[0]["alt"], pictures[0]["alt"]


def test_save_html_opens_offline_and_shows_the_matrix(lab, tmp_path):
    from mhacourse.viz import AttentionExplorer
    from mhacourse.viz.demo import demo_layer

    _, context, _ = lab
    tokens = "the cat sat on the mat".split()
    layer, x = demo_layer(tokens)
    path = AttentionExplorer(layer, x, tokens=tokens).save_html(tmp_path / "explorer.html")
    requests = []
    page = context.new_page()
    try:
        page.on("request", lambda request: requests.append(request.url))
        page.route("http*://**", lambda route: route.abort())  # offline: nothing may load
        page.goto(path.as_uri())
        page.wait_for_selector(".mha-explorer[data-draws]")
        assert "head 0" in page.inner_text(".mha-title")
        assert page.evaluate("() => document.querySelector('.mha-explorer').parentElement.mhaExplorer"
                             ".base.getContext('2d').getImageData(0, 0, 600, 600).data"
                             ".some((v, i) => i % 4 === 1 && v > 150)")
        page.screenshot(path=str(ARTIFACTS / "10_standalone_html.png"), full_page=True)
        assert [url for url in requests if not url.startswith(("file:", "blob:", "data:"))] == []
    finally:
        page.close()


# -- issue 23: readable from the back of a lecture hall --------------------------------------

FITS = """(k) => {
    const e = (JS_EXPLORER)(k), root = e.root;
    const scroller = root.closest('.jp-WindowedPanel-outer') || root.closest('.jp-Notebook');
    scroller.scrollTop += root.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
    const r = root.getBoundingClientRect(), s = scroller.getBoundingClientRect();
    const stage = e.stage.getBoundingClientRect(), side = e.side.getBoundingClientRect();
    const bg = e.base.getContext('2d').getImageData(1, 1, 1, 1).data;
    return {height: r.height, room: Math.min(s.bottom, innerHeight) - r.top, width: r.right, screen: innerWidth,
            sideBeside: Math.abs(side.top - stage.top) < 4, bars: side.bottom - r.top,
            fg: e.theme.fg, bg: `rgb(${bg[0]},${bg[1]},${bg[2]})`,
            axes: root.dataset.axes, bar: root.dataset.colourBar};
}""".replace("(JS_EXPLORER)", f"({JS_EXPLORER})")

CONTRAST = """([a, b]) => {
    const rgb = (t) => { const c = document.createElement('canvas').getContext('2d'); c.fillStyle = t;
        c.fillRect(0, 0, 1, 1); return Array.from(c.getImageData(0, 0, 1, 1).data.slice(0, 3)); };
    const lum = (t) => rgb(t).map((v) => v / 255).map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    const [x, y] = [lum(a), lum(b)];
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}"""


def set_theme(page, name):
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{name}$")).click()
    page.wait_for_function("(n) => document.body.dataset.jpThemeName === n", arg=name, timeout=20_000)
    page.wait_for_timeout(300)


@pytest.mark.parametrize("theme", ["JupyterLab Dark", "JupyterLab Light"])  # dark first, then back
def test_presenter_mode_fits_and_reads_in_both_themes(lab, theme):
    page, _, _ = lab
    set_theme(page, theme)
    main = explorer(page, 0)
    main.locator("button[data-view=heatmap]").click()
    for width, height in ((1366, 768), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)  # the ResizeObserver redraws presenter mode
        fit = page.evaluate(FITS, 0)
        assert fit["axes"] == "queries,keys" and "weight (square root)" in fit["bar"], fit
        assert fit["height"] <= fit["room"] + 1 and fit["width"] <= fit["screen"], fit  # no scrolling
        assert fit["sideBeside"] and fit["bars"] <= fit["room"] + 1, fit  # bars beside the matrix, inside
        assert page.evaluate(CONTRAST, [fit["fg"], fit["bg"]]) >= 4.5, fit  # token labels on the canvas
        main.screenshot(path=str(ARTIFACTS / f"11_presenter_{width}x{height}_{theme.split()[-1].lower()}.png"))
    page.set_viewport_size({"width": 1600, "height": 1200})


def test_lines_view_at_256_tokens_reaches_the_strongest_keys(lab):
    page, _, _ = lab
    long = explorer(page, 1)
    long.scroll_into_view_if_needed()
    long.locator("button[data-view=lines]").click()
    page.evaluate(f"(k) => {{ const e = ({JS_EXPLORER})(k); e.query = 200; e.redraw(); }}", 1)
    result = page.evaluate(f"""(k) => {{
        const e = ({JS_EXPLORER})(k), g = e.linesGeo, p = e.currentPanels[0];
        const order = Array.from({{length: e.meta.n_keys}}, (_, j) => j)
            .sort((a, b) => p.value(200, b) - p.value(200, a));
        const data = e.overlay.getContext('2d').getImageData(0, 0, e.overlay.width, e.overlay.height).data;
        const red = (x, y) => {{  // a red pixel where the line ends (within the line's slope)
            for (let dy = -5; dy <= 5; dy++) {{ const i = 4 * (Math.round(y + dy) * e.overlay.width + Math.round(x));
                if (data[i + 3] > 0 && data[i] > data[i + 2]) return true; }}
            return false; }};
        const top = order.slice(0, 3);
        return {{shown: g.keys, top,
                 reached: top.map((j) => red(g.xR - 1, g.top + (g.keys.indexOf(j) + 0.5) * g.height / g.nk)),
                 labels: e.root.dataset.linesKeys}};
    }}""", 1)
    assert all(j in result["shown"] for j in result["top"]), result
    assert all(result["reached"]), result  # a red line ends at each of the three strongest keys
    long.screenshot(path=str(ARTIFACTS / "12_lines_256_tokens.png"))
    long.locator("button[data-view=heatmap]").click()


def test_exported_png_carries_the_title(lab):
    page, _, _ = lab
    main = explorer(page, 0)
    main.scroll_into_view_if_needed()
    band = page.evaluate(f"""(k) => {{
        const e = ({JS_EXPLORER})(k), c = e.pngCanvas();
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height - e.base.height).data;
        let ink = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 200) ink++;
        return {{extra: c.height - e.base.height, ink, title: e.titleText()}};
    }}""", 0)
    assert band["extra"] > 20 and band["ink"] > 200, band  # a band of text above the picture
    with page.expect_download() as png:
        main.locator("button.mha-png").click()
    path = ARTIFACTS / "13_export_with_title.png"
    png.value.save_as(path)
    from PIL import Image

    with Image.open(path) as image:
        assert image.height == page.evaluate(f"(k) => ({JS_EXPLORER})(k).base.height", 0) + band["extra"]


def test_lines_overlay_heads_and_the_query_key_vectors(lab):
    page, _, _ = lab
    main = explorer(page, 0)
    main.scroll_into_view_if_needed()
    main.locator("button[data-view='lines']").click()
    main.locator("button.mha-overlay").click()
    overlaid = main.get_attribute("data-overlay").split(",")
    assert len(overlaid) == 8 and len(set(overlaid)) == 8  # every head of the demo layer, one colour each
    colours = page.evaluate(
        f"""(k) => {{
        const c = ({JS_EXPLORER})(k).overlay, d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let p = 0; p < d.length; p += 4)
            if (d[p + 3] > 200) seen.add((d[p] >> 5) * 64 + (d[p + 1] >> 5) * 8 + (d[p + 2] >> 5));
        return seen.size;
    }}""",
        0,
    )
    assert colours >= 8, colours
    main.screenshot(path=str(ARTIFACTS / "10_lines_overlay.png"))
    main.locator("button.mha-overlay").click()  # off again
    assert main.get_attribute("data-overlay") is None
    # The neuron view: asks the kernel once for this head's vectors, then hover needs nothing.
    main.locator("button[data-view='heatmap']").click()
    main.locator("button.mha-vector-toggle").click()
    page.wait_for_function("!document.querySelector('.mha-explorer .mha-vectors').innerText.includes('asking')")
    x, y = cell_centre(page, 0, 5, 4)
    page.mouse.move(x, y)
    page.wait_for_function("document.querySelector('.mha-explorer').dataset.vectors !== undefined")
    head = int(main.get_attribute("data-vectors").split(":")[1])
    rows = main.locator(".mha-vector-table tr[data-dim]")
    assert rows.count() == 16  # D_h = 128 / 8
    text = main.locator(".mha-vectors").inner_text()
    assert f"head {head}" in text and "score = scale × Σ" in text
    main.screenshot(path=str(ARTIFACTS / "11_query_key_vectors.png"))
    main.locator("button.mha-vector-toggle").click()


PER_HEAD = """import numpy as np
import mhacourse.viz.explorer as explorer_module
from mhacourse.viz import AttentionExplorer

# As for 12 layers x 12 heads x 1024 tokens, at a size quick to test: layers go a head at a time.
explorer_module.ALL_AT_BUILD, explorer_module.WHOLE_LAYER = 0, 0
rng = np.random.default_rng(7)
scores = rng.standard_normal((2, 4, 64, 64)).astype(np.float32) * 3  # (layers, H, L, L)
weights = np.exp(scores - scores.max(-1, keepdims=True))
weights /= weights.sum(-1, keepdims=True)
AttentionExplorer(weights=list(weights))
"""


def per_head_weights():
    """The weights PER_HEAD makes, computed here the same way: ``(layers, H, L, L)``."""
    scores = np.random.default_rng(7).standard_normal((2, 4, 64, 64)).astype(np.float32) * 3
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def test_a_large_layer_travels_one_head_at_a_time(lab):
    """Head, grid and overlay ask the kernel for the heads they show; each arrives and decodes right."""
    page, context, tmp = lab
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PER_HEAD)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
        tmp / "work" / "per_head.ipynb")
    other = open_and_run(context, page.url.split("/lab")[0], "per_head.ipynb", new_page=True)
    try:
        other.wait_for_function("document.querySelectorAll('.mha-explorer[data-draws]').length === 1", timeout=60_000)
        js = "(k) => document.querySelectorAll('.mha-explorer')[k].parentElement.mhaExplorer"
        held = f"""(k) => {{ const e = ({js})(k), out = [];
            e.codes.forEach((heads, l) => heads.forEach((c, h) => {{ if (c) out.push(`${{l}}:${{h}}`); }}));
            return out; }}"""
        assert other.evaluate(held, 0) == ["0:0"]  # the build sends the head on screen only
        root = other.locator(".mha-explorer").first
        root.scroll_into_view_if_needed()
        root.locator("button.mha-head", has_text="2").first.click()
        other.wait_for_function(f"(k) => ({js})(k).head === 2 && ({js})(k).held(0, 2)", arg=0, timeout=20_000)
        numbers = root.locator(".mha-numbers").inner_text()
        assert root.get_attribute("data-head") == "2" and "loading" not in numbers
        assert re.search(r"query 63 looks most at \d+: ", numbers) and "“" not in numbers  # no tokens: positions once
        # The grid opens layer 1, head 3 blank, asks for it and draws it.
        root.locator("button[data-view=grid]").click()
        other.evaluate(f"""(k) => {{
            const e = ({js})(k), g = e.gridGeo, r = e.overlay.getBoundingClientRect();
            const x = r.left + g.left + 3 * (g.thumb + 6) + g.thumb / 2;
            const y = r.top + g.top + (g.thumb + 6) + g.thumb / 2;
            e.overlay.dispatchEvent(new MouseEvent('click', {{clientX: x, clientY: y, bubbles: true}}));
        }}""", 0)
        other.wait_for_function(f"(k) => ({js})(k).held(1, 3) && !({js})(k).need()", arg=0, timeout=20_000)
        assert (root.get_attribute("data-layer"), root.get_attribute("data-head")) == ("1", "3")
        other.wait_for_function("!document.querySelector('.mha-explorer .mha-numbers').innerText.includes('loading')")
        # The lines view overlays four heads of layer 1: they come in one answer, each decoded right.
        root.locator("button[data-view=lines]").click()
        root.locator("button.mha-overlay").click()
        other.wait_for_function(f"(k) => [0, 1, 2, 3].every((h) => ({js})(k).held(1, h)) && !({js})(k).need()",
                                arg=0, timeout=20_000)
        decoded = np.array(other.evaluate(f"""(k) => {{ const e = ({js})(k);
            return [0, 1, 2, 3].map((h) => Array.from(e.codes[1][h], (c) => (c / 65535) ** 2)); }}""", 0))
        np.testing.assert_allclose(decoded.reshape(4, 64, 64), per_head_weights()[1], atol=2e-5)
        assert len(root.get_attribute("data-overlay").split(",")) == 4
        # The key column holds each overlaid head's strongest key for the selected query (the last).
        shown_keys = {int(j) for j in root.get_attribute("data-lines-keys").split(",")}
        assert {int(np.argmax(per_head_weights()[1][h][63])) for h in range(4)} <= shown_keys
        root.screenshot(path=str(ARTIFACTS / "13_per_head_overlay.png"))
        # A scale change sends the heads on screen, nothing more.
        root.locator("button.mha-overlay").click()
        root.locator("button[data-view=heatmap]").click()
        revision = root.get_attribute("data-revision")
        root.locator("input.mha-scale").evaluate(
            "(el) => { el.value = 2; el.dispatchEvent(new Event('input', {bubbles: true})); }")
        other.wait_for_function("([k, r]) => document.querySelectorAll('.mha-explorer')[k].dataset.revision !== r",
                                arg=[0, revision], timeout=20_000)
        assert other.evaluate(f"(k) => ({js})(k).perf.lastBytes", 0) == 64 * 64 * 2
    finally:
        other.close()
