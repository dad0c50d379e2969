"""Wall time of the whole `make test` (unit tests and every notebook), target 5 minutes on 2 cores.

Usage: python benchmarks/bench_suite.py [--blas on|off] [--json PATH]
"""

import argparse
import json
import re
import subprocess
import sys
import time

import _common

TARGET_S = 300.0


def run_suite(mode):
    """Run `make test` with the reference ("off") or optimised ("on") BLAS; return time and counts."""
    env = _common.env_for(mode)
    env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " --durations=10 -p no:cacheprovider").strip()
    start = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "test"], env=env, cwd=_common.ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    counts = {word: int(number) for number, word in
              re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", output.splitlines()[-1]
                         if output.strip() else "")}
    durations = re.findall(r"^\s*([\d.]+)s (call|setup|teardown)\s+(.+)$", output, flags=re.M)
    return {
        "blas": mode,
        "seconds": seconds,
        "returncode": done.returncode,
        "counts": counts,
        "summary": output.strip().splitlines()[-1] if output.strip() else "",
        "slowest": [{"seconds": float(s), "when": when, "test": test} for s, when, test in durations[:10]],
        "target_s": TARGET_S,
        "within_target": seconds <= TARGET_S,
        "tail": output[-3000:] if done.returncode else "",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blas", choices=_common.MODES, default="on")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    result = run_suite(args.blas)
    print(f"make test (BLAS {args.blas}): {result['seconds']:.1f} s, {result['summary']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
