"""Explicit vs fused attention, and the course's layer vs mlx.nn's (wraps `mhacourse bench`).

Usage: python benchmarks/bench_attention.py [--json PATH] [--plot PATH] [mhacourse bench flags]
"""

import sys

import _common  # noqa: F401  (puts the repository on sys.path)

from mhacourse import bench

if __name__ == "__main__":
    sys.exit(bench.main(sys.argv[1:]))
