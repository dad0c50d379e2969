"""Execution time of every course notebook (lessons, exercises, solutions), one kernel at a time.

Each notebook runs in a fresh kernel of this Python (as nbval's --nbval-current-env does), from
its own folder, with nbclient. The kernel inherits this process's environment, so run_all.py
calls this script once per BLAS. Targets: a lesson within 10 s, the capstone within 90 s.

Usage: python benchmarks/bench_notebooks.py [--json PATH] [NOTEBOOK ...]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import _common

FOLDERS = ("notebooks", "exercises", "solutions")
LESSON_TARGET_S = 10.0
CAPSTONE_TARGET_S = 90.0
TRAINING_TARGET_S = 60.0   # lesson 09 trains a model (the limit for training lessons)
CELL_TIMEOUT_S = 600


def find_notebooks(root=_common.ROOT):
    return [path for folder in FOLDERS for path in sorted((root / folder).glob("*.ipynb"))]


def target_for(path):
    name = path.name.lower()
    if "trained_heads" in name or name.startswith("09"):
        return TRAINING_TARGET_S
    return CAPSTONE_TARGET_S if "capstone" in name or name.startswith("08") else LESSON_TARGET_S


def run_notebook(path):
    """Execute one notebook; return seconds (kernel start included), kernel start and errors."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        started = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
    end = time.perf_counter()
    errors = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.get("outputs", []) if output.get("output_type") == "error")
    return {"seconds": end - start, "kernel_start_s": started - start, "cells_s": end - started,
            "errors": errors}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    paths = [path.resolve() for path in args.notebooks] or find_notebooks()
    from mhacourse import blas

    results = []
    for path in paths:
        result = run_notebook(path)
        result.update(notebook=str(path.relative_to(_common.ROOT)), target_s=target_for(path))
        result["within_target"] = result["seconds"] <= result["target_s"]
        results.append(result)
        errors = f"  errors: {result['errors']}" if result["errors"] else ""
        print(f"{result['notebook']:<45} {result['seconds']:6.1f} s (kernel start {result['kernel_start_s']:.1f} s)"
              f"  target {result['target_s']:.0f} s {'ok' if result['within_target'] else 'OVER'}{errors}",
              file=sys.stderr)
    document = {"blas": blas.find_optimised_blas() or "reference", "notebooks": results,
                "total_s": sum(result["seconds"] for result in results)}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1)
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
