"""The explorer in a real browser at 12 layers x 12 heads x 1024 tokens (Performance API, Playwright).

Runs a notebook in JupyterLab in Debian's Chromium (tests/browser_harness.py)
and reports, without asserting anything:

- the size of the data sent when the explorer is built: above 8M weights one
  layer, and of a layer above 1M weights one head (8-bit codes above 32M
  weights in all, 16-bit below), and the grid's
  thumbnails; kernel memory (resident, and its peak) after building;
- the kernel redrawing the static picture (it does so after a control pauses);
- time to first draw: the kernel building the explorer, the browser from
  ``render()`` to the first picture, and the whole way from the cell starting
  to the first picture;
- hover-to-repaint: the browser's work for one mouse move over the heatmap
  (outline, bars, numbers) and from the event to the next animation frame
  (goal: within one frame, 16 ms);
- switching head: to a head not held yet (a layer above ``WHOLE_LAYER``
  weights travels a head at a time, so the browser asks the kernel for it),
  and back to a held one (a full redraw: block maxima of 1024 x 1024 into the
  canvas); the layer x head grid of 144 thumbnails;
- control change -> new picture on the same explorer (goal: 150 ms at 512
  tokens, 300 ms at 1024): scale and mask changes in the heatmap (the kernel
  recomputes and sends the head on screen only) and a scale change in the grid
  (the thumbnails only), from the input event to the picture drawn, with the
  bytes each answer carried; browser JS heap after all that;
- up to 512 tokens, ``save_html`` of the same weights: its size, and the time
  from opening it offline to the first draw.

    python benchmarks/bench_explorer_browser.py [--layers 12] [--heads 12] [--tokens 1024] [--json out.json]

Needs Chromium at /usr/bin/chromium and PyPI playwright, like the browser test.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat

from tests.browser_harness import chromium, lab_server, missing_browser, open_and_run

EXPLORER = "(k) => document.querySelectorAll('.mha-explorer')[k].parentElement.mhaExplorer"

SETUP = """import time
import mlx.core as mx
from mhacourse import MultiHeadAttention
from mhacourse.viz import AttentionExplorer

mx.random.seed(0)
layers, heads, tokens = {layers}, {heads}, {tokens}
stack = []
for _ in range(layers):
    scores = mx.random.normal((heads, tokens, tokens)) * 3       # (H, L, L)
    stack.append(mx.softmax(scores, axis=-1))
mx.eval(stack)
tokens_text = [f"t{{i}}" for i in range(tokens)]
"""

SHOW = """import resource
def rss_mb():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize() / 1e6
before = rss_mb()
start = time.time()
big = AttentionExplorer(weights=stack, tokens=tokens_text)
sent = sum(len(b) for b in big._weights) + len(big._thumbs)
construct_ms = 1e3 * (time.time() - start)
print(f"BENCH start={{start:.3f}} construct_ms={{construct_ms:.1f}} bytes={{sent}} "
      f"bits={{big._meta['bits']}} rss_before_mb={{before:.0f}} rss_after_mb={{rss_mb():.0f}} "
      f"peak_mb={{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f}}")
big
"""

# The static picture, which the kernel redraws after a control pauses: a fresh explorer (nothing cached),
# timed at another scale under a causal mask.
PICTURE = """from mhacourse.viz.picture import picture_bundle
timed = AttentionExplorer(weights=stack, tokens=tokens_text)
timed.scale, timed.mask = 1.5, "causal"
t = time.perf_counter()
picture_bundle(timed)
print(f"PICTURE picture_ms={1e3 * (time.perf_counter() - t):.0f}")
del timed
"""


def _notebook(path, layers, heads, tokens, scale_tokens):
    cells = [nbformat.v4.new_code_cell(SETUP.format(layers=layers, heads=heads, tokens=tokens)),
             nbformat.v4.new_code_cell(SHOW.format()), nbformat.v4.new_code_cell(PICTURE)]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


def _stats(values):
    ordered = sorted(v for v in values if v is not None)  # None: the event did not reach the canvas
    if not ordered:
        return {"median": float("nan"), "p90": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1], "n": len(ordered)}


def _hover(page, k, rows, box=0):
    """Move over ``rows`` rows of explorer ``k``; the browser's work and event-to-frame times."""
    work, frame = [], []
    for i in rows:
        x, y = page.evaluate(f"""([k, i]) => {{
            const e = ({EXPLORER})(k), g = e.geo, b = g.boxes[0], w = g.win, r = e.overlay.getBoundingClientRect();
            const row = Math.min(w.rows - 1, Math.max(0, i - w.r0));
            return [r.left + b.x + b.w / 3, r.top + b.y + (row + 0.5) * b.h / w.rows];
        }}""", [k, i])
        page.mouse.move(x, y)
        # Wait for the animation frame after this hover.
        page.wait_for_function(f"(k) => {{ const p = ({EXPLORER})(k).perf; return p.framedHover === p.hovers; }}",
                               arg=k)
        perf = page.evaluate(f"(k) => ({EXPLORER})(k).perf", k)
        work.append(perf["lastRepaintMs"])
        frame.append(perf["lastFrameMs"])
    return _stats(work), _stats(frame)


def _control(page, k, select, value, trips, sizes, timeouts, in_page=None, on_screen=None):
    """Change a kernel control of explorer ``k``; input event -> new picture drawn (ms) and bytes received.

    ``trips`` is timed from Python (it includes Playwright's round trips); ``in_page`` from the
    page's own clock: input event -> the answer drawn on the canvas; ``on_screen``: input event ->
    the start of the first animation frame after that (the frame that shows it).
    """
    revision = page.evaluate(f"(k) => ({EXPLORER})(k).revision", k)
    start = page.evaluate("""([k, select, value]) => {
        const el = document.querySelectorAll('.mha-explorer')[k].querySelector(select);
        el.value = value; const t = performance.now();
        el.dispatchEvent(new Event(el.tagName === 'SELECT' ? 'change' : 'input', {bubbles: true})); return t; }""",
                          [k, select, value])
    try:
        page.wait_for_function(f"([k, r]) => ({EXPLORER})(k).revision !== r", arg=[k, revision],
                               timeout=60_000, polling="raf")
    except Exception:  # reported as a missing answer, not a crash of the whole benchmark
        timeouts.append(value)
        return
    trips.append(page.evaluate("performance.now()") - start)
    sizes.append(page.evaluate(f"(k) => ({EXPLORER})(k).perf.lastBytes", k))
    if in_page is not None:
        in_page.append(page.evaluate(f"(k) => ({EXPLORER})(k).perf.lastDrawnAt", k) - start)
    if on_screen is not None:
        page.wait_for_function(f"(k) => ({EXPLORER})(k).perf.framedRevision === ({EXPLORER})(k).revision", arg=k,
                               timeout=10_000)
        on_screen.append(page.evaluate(f"(k) => ({EXPLORER})(k).perf.lastFramedAt", k) - start)


def run(layers=12, heads=12, tokens=1024, scale_tokens=None, repeats=40):
    reason = missing_browser()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work, home = tmp / "work", tmp / "jupyter"
        work.mkdir()
        home.mkdir()
        _notebook(work / "bench.ipynb", layers, heads, tokens, scale_tokens)
        with lab_server(work, home) as url, chromium(tmp / "profile") as context:
            page = open_and_run(context, url, "bench.ipynb", timeout=120_000)
            page.wait_for_function("document.querySelectorAll('.mha-explorer[data-draws]').length === 1",
                                   timeout=600_000, polling=200)
            line = page.locator(".jp-OutputArea-output", has_text="BENCH").first.inner_text()
            fields = dict(part.split("=") for part in line.split()[1:])
            first_draw_epoch = page.evaluate(
                "performance.timeOrigin + performance.getEntriesByName('mha-first-draw')[0].startTime")
            perf = page.evaluate(f"(k) => ({EXPLORER})(k).perf", 0)
            result = {
                "layers": layers, "heads": heads, "tokens": tokens,
                "bytes_sent": int(fields["bytes"]), "bits": int(fields["bits"]),
                "kernel_rss_before_mb": float(fields["rss_before_mb"]),
                "kernel_rss_after_mb": float(fields["rss_after_mb"]),
                "kernel_peak_rss_mb": float(fields["peak_mb"]),
                "kernel_construct_ms": float(fields["construct_ms"]),
                "browser_first_draw_ms": perf["firstDrawMs"],
                "cell_start_to_first_draw_ms": first_draw_epoch - 1e3 * float(fields["start"]),
            }
            picture = page.locator(".jp-OutputArea-output", has_text="PICTURE").first
            picture.wait_for(timeout=600_000)
            result["kernel_picture_ms"] = float(picture.inner_text().split("=")[1])
            page.locator(".mha-explorer").first.scroll_into_view_if_needed()
            shots = ROOT / "artifacts" / "browser"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "bench_first_draw.png"))
            rows = [int(i * tokens / repeats) for i in range(repeats)]
            result["hover_full_matrix"] = dict(zip(("work_ms", "event_to_frame_ms"), _hover(page, 0, rows)))
            page.evaluate(f"(k) => ({EXPLORER})(k).zoom(1 / 16)", 0)  # a 64 x 64 window
            result["hover_zoomed_64"] = dict(zip(("work_ms", "event_to_frame_ms"),
                                                 _hover(page, 0, [row // 16 for row in rows])))
            page.evaluate(f"(k) => ({EXPLORER})(k).fit()", 0)
            # Switching head: a head not held yet is asked for (one head: the layer is too large to send
            # whole) and drawn when it arrives; going back to a held head is a redraw only.
            fetched, draws = [], []
            for head in range(1, min(heads, 8)):
                start = page.evaluate(f"([k, h]) => {{ const t = performance.now(); ({EXPLORER})(k).setHead(0, h); "
                                      "return t; }", [0, head])
                page.wait_for_function(f"([k, h]) => {{ const e = ({EXPLORER})(k); return e.head === h && !e.need() "
                                       "&& !e.inFlight; }", arg=[0, head], timeout=60_000)
                fetched.append(page.evaluate(f"(k) => ({EXPLORER})(k).perf.lastDrawnAt", 0) - start)
            for head in range(min(heads, 8)):
                draws.append(page.evaluate(f"([k, h]) => {{ const e = ({EXPLORER})(k); e.setHead(0, h); "
                                           "return e.perf.lastDrawMs; }", [0, head]))
            result["switch_head_fetch_ms"] = _stats(fetched)
            result["switch_head_redraw_ms"] = _stats(draws)
            result["grid_view_draw_ms"] = page.evaluate(
                f"(k) => {{ const e = ({EXPLORER})(k); e.setView('grid'); return e.perf.lastDrawMs; }}", 0)
            result["lines_view_draw_ms"] = page.evaluate(
                f"(k) => {{ const e = ({EXPLORER})(k); e.setView('lines'); return e.perf.lastDrawMs; }}", 0)

            page.evaluate(f"(k) => ({EXPLORER})(k).setView('heatmap')", 0)
            page.locator(".mha-explorer").first.locator("input.mha-scale").scroll_into_view_if_needed()
            for name, select, values in (
                    ("scale_change", "input.mha-scale", [0.4 + 0.25 * k for k in range(8)]),
                    ("mask_change", "select.mha-mask", ["causal", "none"] * 3)):
                trips, sizes, timeouts, in_page, on_screen = [], [], [], [], []
                for value in values:
                    _control(page, 0, select, value, trips, sizes, timeouts, in_page, on_screen)
                result[name] = {"ms": _stats(trips), "in_page_ms": _stats(in_page), "on_screen_ms": _stats(on_screen),
                                "bytes": _stats(sizes), "unanswered": len(timeouts)}
            page.evaluate(f"(k) => ({EXPLORER})(k).setView('grid')", 0)
            page.wait_for_function(f"(k) => !({EXPLORER})(k).need()", arg=0, timeout=60_000)
            trips, sizes, timeouts, in_page, on_screen = [], [], [], [], []
            for value in [0.5 + 0.25 * k for k in range(4)]:
                _control(page, 0, "input.mha-scale", value, trips, sizes, timeouts, in_page, on_screen)
            result["grid_scale_change"] = {"ms": _stats(trips), "in_page_ms": _stats(in_page),
                                           "on_screen_ms": _stats(on_screen), "bytes": _stats(sizes),
                                           "unanswered": len(timeouts)}
            # Opening another layer after a change: it is asked for and drawn when it arrives.
            page.evaluate(f"(k) => ({EXPLORER})(k).setView('heatmap')", 0)
            start = page.evaluate(
                f"(k) => {{ const t = performance.now(); ({EXPLORER})(k).setHead(1, 0); return t; }}", 0)
            page.wait_for_function(f"(k) => ({EXPLORER})(k).layer === 1 && !({EXPLORER})(k).need()", arg=0,
                                   timeout=60_000)
            result["open_other_layer_ms"] = page.evaluate("performance.now()") - start
            result["browser_js_heap_mb"] = page.evaluate(
                "performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null")
            if tokens <= SAVE_HTML_TOKENS:
                result.update(_save_html(context, tmp, layers, heads, tokens))
    return result


SAVE_HTML_TOKENS = 512  # beyond, the standalone page (every layer inlined) is over 200 MB: not measured


def _save_html(context, tmp, layers, heads, tokens):
    """``save_html`` of the same weights: its size, the time to write it, and to its first draw offline."""
    import mlx.core as mx

    from mhacourse.viz import AttentionExplorer

    mx.random.seed(0)
    stack = [mx.softmax(mx.random.normal((heads, tokens, tokens)) * 3, axis=-1) for _ in range(layers)]
    start = time.perf_counter()
    path = AttentionExplorer(weights=stack).save_html(tmp / "standalone.html")
    written = time.perf_counter() - start
    page = context.new_page()
    page.goto(path.as_uri(), timeout=120_000)
    page.wait_for_function("document.querySelector('.mha-explorer[data-draws]') !== null", timeout=120_000,
                           polling=100)
    drawn = page.evaluate("performance.getEntriesByName('mha-first-draw')[0].startTime")
    page.close()
    return {"save_html_mb": path.stat().st_size / 1e6, "save_html_write_s": written, "save_html_draw_ms": drawn}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    r = run(args.layers, args.heads, args.tokens)
    print(f"AttentionExplorer in Chromium (JupyterLab): {r['layers']} layers x {r['heads']} heads x "
          f"{r['tokens']} tokens")
    print(f"data sent once: {r['bytes_sent'] / 1e6:.1f} MB ({r['bits']}-bit square-root codes, "
          f"{r['bits'] // 8} byte(s) per weight)")
    print(f"first draw: kernel builds the explorer {r['kernel_construct_ms']:.0f} ms; browser render() to "
          f"picture {r['browser_first_draw_ms']:.0f} ms; "
          f"cell start to picture {r['cell_start_to_first_draw_ms']:.0f} ms")
    print(f"static picture (redrawn by the kernel after a control pauses, scale 1.5, causal): "
          f"{r['kernel_picture_ms']:.0f} ms")
    for name in ("hover_full_matrix", "hover_zoomed_64"):
        work, frame = r[name]["work_ms"], r[name]["event_to_frame_ms"]
        print(f"{name:<20} hover-to-repaint ({work['n']} moves): work median {work['median']:.1f} ms "
              f"(p90 {work['p90']:.1f}); event to next frame median {frame['median']:.1f} ms "
              f"(p90 {frame['p90']:.1f}); goal 16 ms")
    d, f = r["switch_head_redraw_ms"], r["switch_head_fetch_ms"]
    print(f"switch head: to a head not held yet (asked of the kernel, input -> drawn in the page's clock) "
          f"median {f['median']:.0f} ms, max {f['max']:.0f} ms; back to a held head (full redraw) median "
          f"{d['median']:.1f} ms, max {d['max']:.1f} ms")
    print(f"grid view ({r['layers'] * r['heads']} thumbnails): {r['grid_view_draw_ms']:.0f} ms; "
          f"lines view: {r['lines_view_draw_ms']:.1f} ms")
    print(f"kernel memory: {r['kernel_rss_before_mb']:.0f} MB before building (the weights in MLX), "
          f"{r['kernel_rss_after_mb']:.0f} MB after, peak {r['kernel_peak_rss_mb']:.0f} MB; browser JS heap "
          f"{r['browser_js_heap_mb'] or float('nan'):.0f} MB")
    goal = 150 if r["tokens"] <= 512 else 300
    for name in ("scale_change", "mask_change", "grid_scale_change"):
        t, b = r[name]["ms"], r[name]["bytes"]
        print(f"{name:<18} input to new picture: median {t['median']:.0f} ms (p90 {t['p90']:.0f}, max {t['max']:.0f}; "
              f"goal {goal} ms), {b['median'] / 1e6:.2f} MB per answer, {r[name]['unanswered']} unanswered")
        p, f = r[name]["in_page_ms"], r[name]["on_screen_ms"]
        print(f"{'':<18} in the page's clock (without Playwright's round trips): input event -> answer drawn "
              f"median {p['median']:.0f} ms (p90 {p['p90']:.0f}, max {p['max']:.0f}); -> the next frame, which "
              f"shows it, median {f['median']:.0f} ms (p90 {f['p90']:.0f})")
    print(f"open another layer after a change: {r['open_other_layer_ms']:.0f} ms")
    if "save_html_mb" in r:
        print(f"save_html: {r['save_html_mb']:.1f} MB written in {r['save_html_write_s']:.1f} s; opened offline, "
              f"navigation to first draw {r['save_html_draw_ms']:.0f} ms")
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
