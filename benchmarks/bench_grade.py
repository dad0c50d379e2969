"""Throughput of ``mhacourse grade`` (sandboxed) on the 31 fixture submissions.

Makes the fixtures (``tests/fixtures/make_submissions.py``) in a temporary
folder, grades the whole folder with ``--jobs 1`` and ``--jobs 2``, prints
notebooks per minute, where the time goes (sandbox start, the sandbox's Python
starting, the student's code, judging) and checks every score against the
expected one::

    python benchmarks/bench_grade.py [--jobs 1,2] [--timeout 10] [--json out.json]
    python benchmarks/bench_grade.py --many 300 --jobs 2      # a class: 300 copies of the fixtures
    python benchmarks/bench_grade.py --jobs 2 --no-sandbox    # the same design without bwrap

Exits 1 if any submission got another status or score than expected.
"""

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mhacourse.grading import grade


def load_fixture_maker():
    path = ROOT / "tests" / "fixtures" / "make_submissions.py"
    spec = importlib.util.spec_from_file_location("make_submissions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mismatches(reports, expected):
    """Submissions whose status or points differ from the fixture's expectation."""
    wrong = []
    for report in reports:
        want = expected[Path(report["file"]).name]
        solved = [row["id"] for row in report["exercises"] if row["points"] > 0]
        full = all(row["points"] == row["max_points"] for row in report["exercises"] if row["id"] in solved)
        if report["status"] != want["status"] or solved != want["solved"] or not full:
            wrong.append(f"{Path(report['file']).name}: got {report['status']} {solved}, "
                         f"expected {want['status']} {want['solved']} ({report['detail'][:200]})")
    return wrong


def time_split(reports):
    """Seconds per notebook: sandbox start (bwrap, cgroup, dropping privileges), the sandbox's Python
    start, the student's code, judging, and the policy read from the source (``audit``)."""
    timed = [r["timing"] for r in reports if r.get("timing", {}).get("runs")]
    if not timed:
        return {}
    n = len(timed)
    sandbox = sum(t["sandbox"] * t["runs"] for t in timed) / n
    return {
        "sandbox_start": round(sandbox, 3),
        "python_start": round(sum(t["start"] for t in timed) / n - sandbox, 3),
        "student_code": round(sum(t["cells"] + t["checks"] for t in timed) / n, 3),
        "judge": round(sum(t["judge"] for t in timed) / n, 3),
        "audit": round(sum(t.get("audit", 0.0) for t in timed) / n, 3),
        "runs": round(sum(t["runs"] for t in timed) / n, 2),
        "wall": round(sum(r["seconds"] for r in reports) / len(reports), 3),
    }


def make_many(folder, count, lesson=None):
    """``count`` submissions cycling through the fixtures; returns their expectations."""
    fixtures = Path(folder) / "fixtures"
    expected = load_fixture_maker().make_submissions(fixtures, lesson)
    names = sorted(expected)
    many = {}
    for number in range(count):
        name = names[number % len(names)]
        copy = name.replace(".ipynb", f"-{number:04d}.ipynb")  # same lesson prefix (or none)
        shutil.copy(fixtures / name, Path(folder) / copy)
        many[copy] = expected[name]
    return many


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per cell (default: 10)")
    parser.add_argument("--lesson", default=None, help="lesson the fixtures are made from (default: the first)")
    parser.add_argument("--many", type=int, default=0, metavar="N",
                        help="grade N submissions (copies of the fixtures) instead of the 31")
    parser.add_argument("--no-sandbox", action="store_true", help="run without bwrap (to see its cost)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    results, failed = [], False
    with tempfile.TemporaryDirectory(prefix="mhacourse-bench-grade-") as folder:
        if args.many:
            expected = make_many(folder, args.many, args.lesson)
            paths = sorted(Path(folder) / name for name in expected)
        else:
            expected = load_fixture_maker().make_submissions(folder, args.lesson)
            paths = grade.collect_submissions([folder])
        print(f"{len(paths)} submissions (lesson fixtures from {ROOT / 'solutions'}), timeout {args.timeout:g} s "
              f"per cell, {'un' if args.no_sandbox else ''}sandboxed")
        for jobs in (int(j) for j in args.jobs.split(",")):
            start = time.perf_counter()
            reports = grade.grade_many(paths, jobs=jobs, timeout=args.timeout, progress=False,
                                       sandbox=not args.no_sandbox)
            seconds = time.perf_counter() - start
            wrong = mismatches(reports, expected)
            failed |= bool(wrong)
            per_minute = 60 * len(paths) / seconds
            slowest = max(reports, key=lambda r: r.get("seconds", 0))
            split = time_split(reports)
            results.append({"jobs": jobs, "notebooks": len(paths), "seconds": round(seconds, 2),
                            "notebooks_per_minute": round(per_minute, 1), "per_notebook": split,
                            "sandboxed": not args.no_sandbox, "mismatches": wrong})
            print(f"--jobs {jobs}: {len(paths)} notebooks in {seconds:6.1f} s = {per_minute:5.1f} notebooks/min "
                  f"(slowest {Path(slowest['file']).name.split('__')[-1]} {slowest['seconds']:.1f} s); "
                  f"{len(paths) - len(wrong)}/{len(paths)} scores as expected")
            if split:
                print(f"  per notebook (mean s): sandbox start {split['sandbox_start']}, Python + MLX start "
                      f"{split['python_start']}, student's code {split['student_code']}, judging {split['judge']}, "
                      f"source policy {split['audit']}, "
                      f"runs {split['runs']}, wall {split['wall']}")
            for line in wrong:
                print(f"  MISMATCH {line}")
    if args.json:
        args.json.write_text(json.dumps({"runs": results}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
