"""Off the kernel: the demo notebook, executed and converted to HTML, shows a labelled picture per explorer.

nbclient runs ``notebooks/demo_attention_explorer.ipynb`` (storing the widget
state, as it does by default), nbconvert turns it into HTML (what nbviewer
shows), and Chromium opens the file offline: every request that is not
``file://`` is aborted, so the widget manager nbconvert would load from a CDN
never arrives. Each explorer cell must still show a picture: an ``<img>`` of
real size whose alt text names the explorer, and the first one must show the
mask a later cell set (the picture follows the state). One browser for the
module; a screenshot goes to ``artifacts/browser/``.
"""

from pathlib import Path

import pytest

from tests.browser_harness import chromium, require_browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "demo_attention_explorer.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``(executed notebook, path of its nbconvert HTML, profile folder)``."""
    require_browser()
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    tmp = tmp_path_factory.mktemp("export")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    body, _ = HTMLExporter().from_notebook_node(nb)
    page = tmp / "demo_attention_explorer.html"
    page.write_text(body, encoding="utf-8")
    return nb, page, tmp


def test_executed_notebook_keeps_a_picture_under_each_explorer(converted):
    nb, _, _ = converted
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})  # state stored
    explorer_cells = [c for c in nb.cells if c.cell_type == "code"
                      and any(WIDGET_VIEW in o.get("data", {}) for o in c.outputs)]
    assert len(explorer_cells) == 4  # explorer, long input, compare, stepper
    for cell in explorer_cells:
        pictures = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pictures) == 1, cell.source
        data = pictures[0]["data"]
        assert WIDGET_VIEW not in data and 'class="mha-static-picture"' in data["text/html"]
        assert data["text/plain"].startswith("Attention explorer")
    # A later cell set explorer.mask = "causal": the first explorer's picture was redrawn to say so.
    first = next(o for o in explorer_cells[0].outputs if "image/png" in o.get("data", {}))
    assert "mask: causal" in first["data"]["text/plain"]


def test_nbconvert_html_offline_shows_a_labelled_picture_per_explorer(converted):
    _, page_path, tmp = converted
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp / "profile", downloads=False) as context:
        blocked = []

        def only_files(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        page.goto(page_path.as_uri(), wait_until="load")
        cells = page.evaluate(f"""() => [...document.querySelectorAll('.jp-Cell')]
            .filter(cell => cell.querySelector('script[type="{WIDGET_VIEW}"]'))
            .map(cell => [...cell.querySelectorAll('img')].map(img => {{
                const box = img.getBoundingClientRect();
                return {{alt: img.alt, natural: [img.naturalWidth, img.naturalHeight],
                         shown: [box.width, box.height], complete: img.complete}};
            }}))""")
        page.locator('img[alt^="Attention explorer"]').first.screenshot(
            path=str(ARTIFACTS / "nbconvert_offline.png"))
    assert len(cells) == 4, cells
    for images in cells:
        labelled = [i for i in images if i["alt"].startswith("Attention explorer")]
        assert len(labelled) == 1, images
        picture = labelled[0]
        assert picture["complete"] and min(picture["natural"]) >= 300, picture
        assert min(picture["shown"]) >= 200, picture  # drawn on the page, not hidden
    assert "mask: causal" in cells[0][0]["alt"]
    assert blocked, "the page asked for nothing online: the test would not notice a CDN dependency"
    assert not any(url.startswith("file://") for url in blocked)
