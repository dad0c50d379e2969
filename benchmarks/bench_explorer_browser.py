"""The explorer in a real browser at 12 layers x 12 heads x 1024 tokens (Performance API, Playwright).

Runs a notebook in JupyterLab in Debian's Chromium (tests/browser_harness.py)
and reports, without asserting anything:

- the size of the data sent: one 8-bit code per weight above 32M weights
  (151 MB here), 16-bit codes below;
- time to first draw: the kernel building the explorer, the browser from
  ``render()`` to the first picture, and the whole way from the cell starting
  to the first picture;
- hover-to-repaint: the browser's work for one mouse move over the heatmap
  (outline, bars, numbers) and from the event to the next animation frame
  (goal: within one frame, 16 ms);
- a full redraw after switching head (block maxima of 1024 x 1024 into the
  canvas) and the layer x head grid of 144 thumbnails;
- a scale change on a 12 heads x 512 tokens layer: the browser's round trip
  (input event to the new picture drawn); the kernel's share alone is
  ``benchmarks/bench_widget.py --heads 12 --tokens 512``.

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

import nbformat  # noqa: E402

from tests.browser_harness import chromium, lab_server, missing_browser, open_and_run  # noqa: E402

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

SHOW = """start = time.time()
big = AttentionExplorer(weights=stack, tokens=tokens_text)
print(f"BENCH start={{start:.3f}} construct_ms={{1e3 * (time.time() - start):.1f}} bytes={{sum(len(b) for b in big._weights)}} bits={{big._meta['bits']}}")
big
"""

LAYER = """layer = MultiHeadAttention(64 * {heads}, {heads})
x = mx.random.normal((1, {scale_tokens}, 64 * {heads}))
scaled = AttentionExplorer(layer, x)
scaled
"""


def _notebook(path, layers, heads, tokens, scale_tokens):
    cells = [nbformat.v4.new_code_cell(SETUP.format(layers=layers, heads=heads, tokens=tokens)),
             nbformat.v4.new_code_cell(SHOW.format()),
             nbformat.v4.new_code_cell(LAYER.format(heads=heads, scale_tokens=scale_tokens))]
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
        page.wait_for_function(f"(k) => {{ const p = ({EXPLORER})(k).perf; return p.framedHover === p.hovers; }}", arg=k)
        perf = page.evaluate(f"(k) => ({EXPLORER})(k).perf", k)
        work.append(perf["lastRepaintMs"])
        frame.append(perf["lastFrameMs"])
    return _stats(work), _stats(frame)


def run(layers=12, heads=12, tokens=1024, scale_tokens=512, repeats=40):
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
            page.wait_for_function("document.querySelectorAll('.mha-explorer[data-draws]').length === 2",
                                   timeout=600_000, polling=200)
            line = page.locator(".jp-OutputArea-output", has_text="BENCH").first.inner_text()
            fields = dict(part.split("=") for part in line.split()[1:])
            first_draw_epoch = page.evaluate(
                "performance.timeOrigin + performance.getEntriesByName('mha-first-draw')[0].startTime")
            perf = page.evaluate(f"(k) => ({EXPLORER})(k).perf", 0)
            result = {
                "layers": layers, "heads": heads, "tokens": tokens,
                "bytes_sent": int(fields["bytes"]), "bits": int(fields["bits"]),
                "kernel_construct_ms": float(fields["construct_ms"]),
                "browser_first_draw_ms": perf["firstDrawMs"],
                "cell_start_to_first_draw_ms": first_draw_epoch - 1e3 * float(fields["start"]),
            }
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
            draws = []
            for head in range(min(heads, 8)):
                draws.append(page.evaluate(f"([k, h]) => {{ const e = ({EXPLORER})(k); e.setHead(h % 2, h); "
                                           "return e.perf.lastDrawMs; }", [0, head]))
            result["switch_head_redraw_ms"] = _stats(draws)
            result["grid_view_draw_ms"] = page.evaluate(
                f"(k) => {{ const e = ({EXPLORER})(k); e.setView('grid'); return e.perf.lastDrawMs; }}", 0)
            result["lines_view_draw_ms"] = page.evaluate(
                f"(k) => {{ const e = ({EXPLORER})(k); e.setView('lines'); return e.perf.lastDrawMs; }}", 0)

            # A scale change on the 12-head layer: input event -> kernel -> new picture.
            scale = page.locator(".mha-explorer").nth(1).locator("input.mha-scale")
            scale.scroll_into_view_if_needed()
            trips = []
            for k in range(8):
                revision = page.evaluate(f"(k) => ({EXPLORER})(k).revision", 1)
                # Slider positions 10%, 20%, ... of its range: each differs from the last.
                start = page.evaluate("""([el, k]) => { el.value = Number(el.max) * (0.1 + 0.1 * k);
                    const t = performance.now(); el.dispatchEvent(new Event('input', {bubbles: true})); return t; }""",
                                      [scale.element_handle(), k])
                try:
                    page.wait_for_function(f"([k, r]) => ({EXPLORER})(k).revision !== r", arg=[1, revision],
                                           timeout=60_000, polling="raf")
                except Exception:  # reported as a missing trip, not a crash of the whole benchmark
                    result["scale_timeouts"] = result.get("scale_timeouts", 0) + 1
                    continue
                trips.append(page.evaluate("performance.now()") - start)
            result["scale_round_trip_ms"] = _stats(trips)
            result["scale_tokens"] = scale_tokens
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--scale-tokens", type=int, default=512)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    r = run(args.layers, args.heads, args.tokens, args.scale_tokens)
    print(f"AttentionExplorer in Chromium (JupyterLab): {r['layers']} layers x {r['heads']} heads x "
          f"{r['tokens']} tokens")
    print(f"data sent once: {r['bytes_sent'] / 1e6:.1f} MB ({r['bits']}-bit square-root codes, "
          f"{r['bits'] // 8} byte(s) per weight)")
    print(f"first draw: kernel builds the explorer {r['kernel_construct_ms']:.0f} ms; browser render() to "
          f"picture {r['browser_first_draw_ms']:.0f} ms; cell start to picture {r['cell_start_to_first_draw_ms']:.0f} ms")
    for name in ("hover_full_matrix", "hover_zoomed_64"):
        work, frame = r[name]["work_ms"], r[name]["event_to_frame_ms"]
        print(f"{name:<20} hover-to-repaint ({work['n']} moves): work median {work['median']:.1f} ms "
              f"(p90 {work['p90']:.1f}); event to next frame median {frame['median']:.1f} ms "
              f"(p90 {frame['p90']:.1f}); goal 16 ms")
    d = r["switch_head_redraw_ms"]
    print(f"switch head (full redraw): median {d['median']:.1f} ms, max {d['max']:.1f} ms")
    print(f"grid view ({r['layers'] * r['heads']} thumbnails): {r['grid_view_draw_ms']:.0f} ms; "
          f"lines view: {r['lines_view_draw_ms']:.1f} ms")
    t = r["scale_round_trip_ms"]
    print(f"scale change, {r['heads']} heads x {r['scale_tokens']} tokens, input to new picture: "
          f"median {t['median']:.0f} ms (p90 {t['p90']:.0f}, {t['n']} of 8 answered within 60 s); "
          "kernel share: bench_widget.py")
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
