"""Helpers shared by the benchmark runners: environments, child processes, the machine."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mhacourse import blas

MODES = ("off", "on")  # MLX's own reference BLAS, then the optimised one


def env_for(mode, base=None):
    """The environment for a child that runs MLX on the reference ("off") or optimised ("on") BLAS."""
    env = dict(os.environ if base is None else base)
    env.pop(blas.ENV_VAR, None)
    env.pop(blas.REEXEC_MARKER, None)
    if mode == "off":
        env[blas.ENV_VAR] = "off"
    elif mode != "on":
        raise ValueError(f"mode must be 'off' or 'on', got {mode!r}.")
    env = blas.preload_env(env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_json(command, env=None, timeout=1800):
    """Run a runner that prints one JSON document as its last line; return (document, seconds)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def machine():
    """Describe the machine: CPU, cores, memory, OS, Python, MLX, the BLAS available, the load."""
    import mlx.core as mx

    from mhacourse.bench import _cpu_count, _cpu_model

    memory = None
    try:
        with open("/proc/meminfo") as handle:
            memory = round(int(handle.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    found = blas.candidates()
    return {
        "cpu": _cpu_model(),
        "cores": _cpu_count(),
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "mlx": mx.__version__,
        "device": "gpu" if mx.default_device().type == mx.gpu else "cpu",
        "optimised_blas": found[0] if found else None,
        "load_average": list(load) if load else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
