"""Which BLAS MLX runs on, and how to give it a fast one on Linux.

The ``mlx-cpu`` wheel for Linux links the *reference* (netlib) BLAS it ships in
``mlx_cpu.libs``, which multiplies matrices 10 to 30 times slower than an
optimised BLAS on the same CPU. ``libmlx`` resolves the standard ``cblas_*``
symbols dynamically, so a BLAS that is loaded first (``LD_PRELOAD``) takes over.

This module finds such a library, builds the environment that preloads it, and
reports which library the current process's MLX actually calls. On macOS MLX
always uses Apple's Accelerate, and nothing here changes anything.

The environment variable ``MHACOURSE_BLAS`` controls the choice:

- unset or ``auto``: use the first optimised BLAS found (see :func:`candidates`);
- ``off`` (or ``0``, ``no``, ``false``, ``none``): never preload one;
- a path: preload that library.

The module uses the standard library only at import time, so it can run as a
script (``python mhacourse/blas.py exec -- CMD ...``) before MLX is imported.
"""

# Every notebook's first cell, from lesson 00 on, calls advise(): the grader binds this module (standard
# library only) into the sandbox of every later lesson, so that the exercises' first cell runs there too.
__lesson__ = "00"

import sys

if __name__ == "__main__" and sys.path:
    del sys.path[0]  # run as a file: keep the package's modules from shadowing the stdlib's

import ctypes
import glob
import os
import re
import sysconfig
from dataclasses import asdict, dataclass

ENV_VAR = "MHACOURSE_BLAS"
OFF_VALUES = ("off", "0", "no", "false", "none")
OPTIMISED_KINDS = ("MKL", "OpenBLAS", "BLIS", "ATLAS", "Accelerate")


@dataclass(frozen=True)
class BlasInfo:
    """The BLAS behind MLX's CPU matrix multiplication in this process.

    Attributes:
        name (str): ``"OpenBLAS"``, ``"MKL"``, ``"reference"``, ``"Accelerate"``, ...
        path (str or None): the shared library that provides ``cblas_sgemm``.
        optimised (bool): whether it is an optimised implementation.
        preloaded (bool): whether it came before MLX's own (``LD_PRELOAD`` or an
            earlier global load) rather than from MLX's own dependencies.
    """

    name: str
    path: str | None
    optimised: bool
    preloaded: bool

    def as_dict(self):
        return asdict(self)

    def __str__(self):
        where = f" ({self.path})" if self.path else ""
        return f"{self.name}{where}"


def _multiarch():
    return sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"


def candidates(prefix=None):
    """List the optimised BLAS libraries to try, best first.

    MKL from the ``fastblas`` extra (PyPI ``mkl``, installed into the virtual
    environment) comes first, then the system's OpenBLAS (Debian/Ubuntu
    ``libopenblas0-pthread`` or ``-openmp``, Fedora ``openblas``).

    Args:
        prefix (str, optional): the environment to look in for MKL.
            Default: ``sys.prefix``.

    Returns:
        list(str): the paths that exist on this machine.
    """
    prefix = sys.prefix if prefix is None else prefix
    triplet = _multiarch()
    patterns = [
        os.path.join(prefix, "lib", "libmkl_rt.so.*"),
        f"/usr/lib/{triplet}/openblas-pthread/libblas.so.3",
        f"/usr/lib/{triplet}/openblas-openmp/libblas.so.3",
        f"/usr/lib/{triplet}/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib/libopenblas.so.0",
    ]
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern), reverse=True):
            if os.path.isfile(path) and path not in found:
                found.append(path)
    return found


def setting(environ=None):
    """Return the ``MHACOURSE_BLAS`` setting: ``"auto"``, ``"off"`` or a path."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR, "").strip()
    if value == "" or value.lower() == "auto":
        return "auto"
    if value.lower() in OFF_VALUES:
        return "off"
    return value


def find_optimised_blas(environ=None, prefix=None):
    """Find the library to preload under MLX, honouring ``MHACOURSE_BLAS``.

    Args:
        environ (dict, optional): the environment to read. Default: ``os.environ``.
        prefix (str, optional): where to look for MKL. Default: ``sys.prefix``.

    Returns:
        str or None: a path, or ``None`` off Linux, when turned off, or when
        nothing was found.
    """
    if not sys.platform.startswith("linux"):
        return None
    choice = setting(environ)
    if choice == "off":
        return None
    if choice != "auto":
        if not os.path.isfile(choice):
            raise ValueError(
                f"{ENV_VAR}={choice!r} is neither 'auto', 'off' nor an existing library file"
            )
        return choice
    found = candidates(prefix)
    return found[0] if found else None


def _split_preload(value):
    return [item for item in re.split(r"[:\s]+", value or "") if item]


def preload_env(environ=None, prefix=None):
    """Return a copy of the environment that runs MLX on the optimised BLAS.

    ``LD_PRELOAD`` gains the library from :func:`find_optimised_blas` (first,
    once). With ``MHACOURSE_BLAS=off`` the known optimised libraries are taken
    out of ``LD_PRELOAD`` instead, so "off" holds even in a child of a process
    that had one preloaded.

    Args:
        environ (dict, optional): the environment to start from. Default: ``os.environ``.
        prefix (str, optional): where to look for MKL. Default: ``sys.prefix``.

    Returns:
        dict: the new environment.
    """
    env = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux"):
        return env
    preload = _split_preload(env.get("LD_PRELOAD"))
    if setting(env) == "off":
        known = set(candidates(prefix))
        preload = [item for item in preload if item not in known]
    else:
        library = find_optimised_blas(env, prefix)
        if library is not None:
            preload = [library] + [item for item in preload if item != library]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def classify(path):
    """Name the BLAS implementation a library path belongs to.

    Args:
        path (str): a shared library's path.

    Returns:
        str: ``"MKL"``, ``"OpenBLAS"``, ``"BLIS"``, ``"ATLAS"``, ``"Accelerate"``,
        ``"reference"`` or ``"unknown"``.
    """
    for candidate in (path, os.path.realpath(path)):
        lowered = candidate.lower()
        if "mlx_cpu.libs" in lowered or "/blas/libblas" in lowered:
            return "reference"
        for marker, name in (("mkl", "MKL"), ("openblas", "OpenBLAS"), ("blis", "BLIS"),
                             ("atlas", "ATLAS"), ("accelerate", "Accelerate")):
            if marker in lowered:
                return name
    return "unknown"


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _provider(symbol, library=None):
    """Return the shared library that ``symbol`` resolves to, or None.

    With ``library=None`` the lookup runs in the global scope (the program,
    ``LD_PRELOAD`` and libraries loaded with ``RTLD_GLOBAL``); the dynamic
    linker searches it before a library's own dependencies, so what is found
    there wins over MLX's bundled BLAS. With a library path, the lookup runs in
    that (already loaded) library and its dependencies.
    """
    try:
        if library is None:
            handle = ctypes.CDLL(None)
        else:
            handle = ctypes.CDLL(library, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        address = ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value
    except (AttributeError, OSError):
        return None
    process = ctypes.CDLL(None)
    info = _DlInfo()
    process.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not process.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def mapped_libraries(pid="self"):
    """Return the BLAS-like shared libraries mapped into a process, in map order.

    Args:
        pid (int or str): the process to inspect (Linux only). Default: this one.

    Returns:
        list(str): paths whose name looks like a BLAS (blas, mkl, blis, atlas).
    """
    found = []
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                name = os.path.basename(path).lower()
                if re.search(r"blas|mkl|blis|atlas", name) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def current_blas():
    """Report which BLAS this process's MLX calls for matrix multiplication.

    Imports ``mlx.core`` (which loads ``libmlx``) if needed, then asks the
    dynamic linker which library ``cblas_sgemm`` resolves to ahead of MLX's own
    dependencies; if none does, MLX uses the BLAS among the libraries it links.

    Returns:
        BlasInfo: the library and whether it is optimised.
    """
    import mlx.core  # loads libmlx and its BLAS

    if sys.platform == "darwin":
        return BlasInfo("Accelerate", None, True, False)
    provider = _provider("cblas_sgemm")
    if provider is not None:
        name = classify(provider)
        return BlasInfo(name, provider, name in OPTIMISED_KINDS, True)
    provider = _provider("cblas_sgemm", mlx.core.__file__)
    if provider is not None:
        name = classify(provider)
        return BlasInfo(name, os.path.normpath(provider), name in OPTIMISED_KINDS, False)
    return BlasInfo("unknown", None, False, False)


def kernelspec_argv(python=None):
    """Return a Jupyter kernel command line that starts on the optimised BLAS.

    The kernel starts through this file's ``exec`` command, so
    ``MHACOURSE_BLAS`` is read each time a kernel starts.

    Args:
        python (str, optional): the interpreter. Default: ``sys.executable``.

    Returns:
        list(str): the ``argv`` for ``kernel.json``.
    """
    python = python or sys.executable
    launcher = os.path.abspath(__file__)
    return [python, launcher, "exec", "--",
            python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def install_kernelspec(kernel_dir):
    """Rewrite a kernelspec so its kernels run MLX on the optimised BLAS (Linux).

    Args:
        kernel_dir (str): the folder holding ``kernel.json``.

    Returns:
        bool: whether the file was changed (False on macOS).
    """
    import json

    if not sys.platform.startswith("linux"):
        return False
    path = os.path.join(kernel_dir, "kernel.json")
    with open(path) as handle:
        spec = json.load(handle)
    python = spec["argv"][0]
    spec["argv"] = kernelspec_argv(python)
    with open(path, "w") as handle:
        json.dump(spec, handle, indent=1)
    return True


KERNEL_DISPLAY_NAME = "mhacourse (MLX)"
APT_PACKAGE = "libopenblas0-pthread"
_ADVISED = []


def fast_path_note(info=None, environ=None):
    """One line on how to get the fast path, or None when there is nothing to say.

    There is something to say only on Linux, when MLX's default device is the
    CPU, ``MHACOURSE_BLAS`` is not ``off`` and MLX in this process runs on the
    slow reference BLAS (a notebook opened in a plain "Python 3" kernel).

    Args:
        info (BlasInfo, optional): Default: :func:`current_blas`.
        environ (dict, optional): Default: ``os.environ``.

    Returns:
        str or None
    """
    if not sys.platform.startswith("linux") or setting(environ) == "off":
        return None
    if info is None:
        import mlx.core as mx

        if mx.default_device() != mx.cpu:
            return None
        info = current_blas()
    if info.optimised:
        return None
    found = candidates()
    step = (f"switch to the kernel '{KERNEL_DISPLAY_NAME}' (Kernel > Change Kernel; `mhacourse start` registers it)"
            if found else
            f"`sudo apt-get install {APT_PACKAGE}`, then use the kernel '{KERNEL_DISPLAY_NAME}' (`mhacourse start` "
            "registers it)")
    return (f"Slow path: MLX runs on the reference BLAS in this kernel (matrix products 10-30x slower). "
            f"For the fast path, {step}.")


def advise(file=None):
    """Print :func:`fast_path_note` once per process (a lesson's first cell calls it).

    Prints nothing off Linux, on an optimised BLAS, with ``MHACOURSE_BLAS=off``,
    or when it already printed in this process.

    Args:
        file (file, optional): Default: ``sys.stdout``.

    Returns:
        str or None: the line printed.
    """
    if _ADVISED:
        return None
    _ADVISED.append(True)
    note = fast_path_note()
    if note:
        print(note, file=file or sys.stdout)
    return note


REEXEC_MARKER = "_MHACOURSE_BLAS_REEXEC"


def reexec_with_blas():
    """Restart this Python program with the optimised BLAS preloaded, at most once.

    For entry points such as the ``mhacourse`` command: call it first thing.
    It returns without doing anything off Linux, with ``MHACOURSE_BLAS=off``,
    when no optimised BLAS is found, when ``LD_PRELOAD`` already has it, or
    when this process is already the restarted one.
    """
    if not sys.platform.startswith("linux") or os.environ.get(REEXEC_MARKER):
        return
    env = preload_env()
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    env[REEXEC_MARKER] = "1"
    argv = getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + list(argv[1:]), env)


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def exec_with_blas(command, threads=None):
    """Replace this process with ``command`` run under :func:`preload_env`.

    Args:
        command (list(str)): The program and its arguments.
        threads (int, optional): Threads for the BLAS (``OPENBLAS_NUM_THREADS``,
            ``MKL_NUM_THREADS``) unless the environment already sets them; 1
            suits several busy worker processes, such as ``pytest -n 2``.
    """
    if not command:
        raise ValueError("exec needs a command to run, e.g. exec -- python -m pytest")
    env = preload_env()
    if threads is not None:
        for name in THREAD_VARIABLES:
            if not env.get(name):
                env[name] = str(threads)
    os.execvpe(command[0], command, env)


USAGE = """usage: python mhacourse/blas.py COMMAND
  path                 print the library to preload (nothing if none or off)
  env                  print LD_PRELOAD=... for a shell (nothing if none or off)
  exec [--threads N] -- CMD [ARG..]
                       run CMD with the optimised BLAS preloaded (N BLAS threads)
  kernelspec DIR       make the kernelspec in DIR start on the optimised BLAS"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "path":
        library = find_optimised_blas()
        if library:
            print(library)
        return 0
    if command == "env":
        value = preload_env().get("LD_PRELOAD")
        if value:
            print(f"LD_PRELOAD={value}")
        return 0
    if command == "exec":
        threads = None
        if rest[:1] == ["--threads"]:
            if len(rest) < 2 or not rest[1].isdigit() or int(rest[1]) < 1:
                print("exec --threads needs a positive integer", file=sys.stderr)
                return 2
            threads, rest = int(rest[1]), rest[2:]
        exec_with_blas(rest[1:] if rest[:1] == ["--"] else rest, threads)
    if command == "kernelspec" and len(rest) == 1:
        install_kernelspec(rest[0])
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
