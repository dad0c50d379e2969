"""Run every benchmark and write bench-results/report.md and results.json (`make bench`).

Runs, each in fresh processes:
  attention   explicit vs fused vs both layers (`mhacourse bench`), on the optimised BLAS
  blas        matmul and attention, MLX's reference BLAS against the optimised one
  notebooks   every notebook's execution time, with the reference and the optimised BLAS
  widget      one AttentionExplorer update (benchmarks/bench_widget.py, widgets engineer)
  grade       the batch grader's throughput (benchmarks/bench_grade.py, grader engineer)
  suite       the whole `make test` wall time, with the optimised and the reference BLAS

Usage: python benchmarks/run_all.py [--out bench-results] [--only a,b] [--skip a,b] [--quick]
  --quick runs the suite once (optimised BLAS) instead of twice, and one BLAS round.
The machine may be shared: the load average at the start and end is recorded with the numbers.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

BENCH_DIR = Path(__file__).resolve().parent
STEPS = ("attention", "blas", "notebooks", "widget", "grade", "suite")


def step_attention(out, args):
    path = out / "attention.json"
    command = [sys.executable, BENCH_DIR / "bench_attention.py", "--json", path, "--plot", out / "attention.png",
               "--repeats", "15"]
    done = subprocess.run(list(map(str, command)), env=_common.env_for("on"), capture_output=True, text=True,
                          cwd=_common.ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(path.read_text())
    result["text"] = done.stdout
    return result


def step_blas(out, args):
    path = out / "blas.json"
    rounds = 1 if args.quick else 3
    subprocess.run([sys.executable, str(BENCH_DIR / "bench_blas.py"), "--rounds", str(rounds), "--json", str(path)],
                   check=True, cwd=_common.ROOT, capture_output=True, timeout=1800)
    return json.loads(path.read_text()) if path.exists() else None


def step_notebooks(out, args):
    results = {}
    for mode in ("on", "off"):
        document, _ = _common.run_json([sys.executable, str(BENCH_DIR / "bench_notebooks.py")],
                                       _common.env_for(mode), timeout=3600)
        results[mode] = document
    return results


def _external(name, out):
    script = BENCH_DIR / f"bench_{name}.py"
    if not script.exists():
        return {"missing": str(script.relative_to(_common.ROOT))}
    path = out / f"{name}.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), "--json", str(path)], env=_common.env_for("on"),
                          capture_output=True, text=True, cwd=_common.ROOT, timeout=1800)
    result = {"seconds": time.perf_counter() - start, "returncode": done.returncode,
              "stdout": done.stdout[-4000:], "stderr": done.stderr[-2000:] if done.returncode else ""}
    if path.exists():
        result["json"] = json.loads(path.read_text())
    return result


def step_widget(out, args):
    return _external("widget", out)


def step_grade(out, args):
    return _external("grade", out)


def step_suite(out, args):
    modes = ("on",) if args.quick else ("on", "off")
    results = {}
    for mode in modes:
        document, _ = _common.run_json([sys.executable, str(BENCH_DIR / "bench_suite.py"), "--blas", mode],
                                       timeout=7200)
        results[mode] = document
    return results


# ---------------------------------------------------------------- report

def _section_machine(machine):
    load = machine.get("load_average")
    return [
        "## Machine",
        f"- {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}",
        f"- Python {machine['python']}, MLX {machine['mlx']}, default device {machine['device']}",
        f"- optimised BLAS found: `{machine['optimised_blas']}`",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'} "
        f"(the machine may be shared: numbers are noisy)",
        f"- run at {machine['time']}",
    ]


def _section_attention(result):
    from mhacourse.bench import format_ratios, format_table

    env = result["environment"]
    lines = ["## Attention: explicit vs fused, mhacourse vs mlx.nn (`mhacourse bench`)",
             f"Device {env['device']}, BLAS {env['blas']['name']}; median of "
             f"{result['rows'][0]['repeats']} runs after warm-up; peak memory beyond the inputs.", "",
             "```", format_table(result["rows"]), "```", "",
             "Checks:", "```", format_ratios(result["checks"]), "```",
             "![attention](attention.png)"]
    return lines


def _section_blas(result):
    if not result:
        return ["## BLAS", "No optimised BLAS found: nothing to compare."]
    sys.path.insert(0, str(BENCH_DIR))
    from bench_blas import format_summary

    return ["## MLX's reference BLAS vs the optimised one (fresh processes, median of rounds)",
            format_summary(result)]


def _section_notebooks(results):
    on, off = results["on"]["notebooks"], results.get("off", {}).get("notebooks", [])
    off_by_name = {row["notebook"]: row for row in off}
    lines = ["## Notebooks (nbclient, one fresh kernel each, kernel start included)",
             "| notebook | optimised BLAS, s | reference BLAS, s | target, s | |", "|---|---|---|---|---|"]
    for row in on:
        other = off_by_name.get(row["notebook"])
        flag = "ok" if row["within_target"] else "**over**"
        if row["errors"]:
            flag += f", {row['errors']} error outputs"
        lines.append(f"| {row['notebook']} | {row['seconds']:.1f} | "
                     f"{other['seconds']:.1f} | " if other else f"| {row['notebook']} | {row['seconds']:.1f} | – | ")
        lines[-1] += f"{row['target_s']:.0f} | {flag} |"
    total_off = results.get("off", {}).get("total_s")
    total_on = f"| **total** | {results['on']['total_s']:.1f} | "
    lines.append(total_on + (f"{total_off:.1f} | | |" if total_off is not None else "– | | |"))
    return lines


def _section_external(title, result):
    lines = [f"## {title}"]
    if "missing" in result:
        return lines + [f"`{result['missing']}` does not exist yet."]
    if result["returncode"]:
        lines.append(f"failed ({result['returncode']}):")
        return lines + ["```", (result["stderr"] or result["stdout"]).strip()[-1500:], "```"]
    return lines + ["```", result["stdout"].strip(), "```"]


def _section_suite(results):
    lines = ["## `make test` (whole suite, 2 workers)", "| BLAS | wall time, s | target, s | result |",
             "|---|---|---|---|"]
    for mode, result in results.items():
        name = "optimised" if mode == "on" else "reference"
        lines.append(f"| {name} | {result['seconds']:.1f} | {result['target_s']:.0f} | {result['summary']} |")
    slowest = results["on"]["slowest"]
    if slowest:
        lines += ["", "Slowest (optimised BLAS):", "```"]
        lines += [f"{item['seconds']:7.2f}s {item['when']:<8} {item['test']}" for item in slowest]
        lines.append("```")
    return lines


def write_report(out, results):
    lines = ["# mhacourse benchmark report", ""]
    lines += _section_machine(results["machine"]) + [""]
    sections = {"attention": _section_attention, "blas": _section_blas, "notebooks": _section_notebooks,
                "widget": lambda r: _section_external("Widget update (benchmarks/bench_widget.py)", r),
                "grade": lambda r: _section_external("Grader throughput (benchmarks/bench_grade.py)", r),
                "suite": _section_suite}
    for step in STEPS:
        if step not in results:
            continue
        if "error" in results[step]:
            lines += [f"## {step}", "failed:", "```", results[step]["error"][-2000:], "```", ""]
            continue
        lines += sections[step](results[step]) + [""]
    load = results.get("load_average_end")
    if load:
        lines.append(f"Load average at the end: {', '.join(f'{x:.2f}' for x in load)}; "
                     f"total {results['seconds']:.0f} s.")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(_common.ROOT / "bench-results"))
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip")
    parser.add_argument("--quick", action="store_true", help="one suite run, one BLAS round")
    args = parser.parse_args(argv)
    steps = [s for s in (args.only.split(",") if args.only else STEPS) if s and s not in args.skip.split(",")]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; expected some of {STEPS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    results = {"machine": _common.machine()}
    for step in steps:
        print(f"[bench] {step} ...", flush=True)
        step_start = time.perf_counter()
        try:
            results[step] = globals()[f"step_{step}"](out, args)
        except Exception as error:  # a failed benchmark is reported, the others still run
            results[step] = {"error": f"{type(error).__name__}: {error}"}
        print(f"[bench] {step} done in {time.perf_counter() - step_start:.1f} s", flush=True)
    results["seconds"] = time.perf_counter() - start
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report = write_report(out, results)
    print(report.read_text())
    print(f"[bench] wrote {report} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
