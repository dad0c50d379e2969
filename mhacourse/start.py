"""``mhacourse start [DIR]``: copy the course into a working folder and register its kernel.

The lessons (``notebooks/``) and the exercises (``exercises/``) are copied from
the installed package (or the checkout, see :mod:`mhacourse.course_files`) into
``DIR``, keeping their folder names so that the links between them work;
``--solutions`` adds ``solutions/``. The course's Jupyter kernel, "mhacourse
(MLX)", is registered (see :func:`register_kernel`): on Linux it starts on an
optimised BLAS when one is installed.

Run again, it never overwrites a learner's work. It keeps a manifest,
``DIR/.mhacourse-manifest.json``, of the hash of every file it wrote, so it can
tell a notebook the learner edited from one they did not touch:

- a file that is missing is copied (again);
- without ``--update``, existing files are left alone, and it says which have
  a newer version in the course;
- with ``--update``, an untouched file gets the new version, and an edited one
  is kept as it is, with the new version written beside it as
  ``NAME.new.ipynb``; it lists both.

A JupyterHub image runs this at every start (``binder/start``): the first run
fills the learner's home, later runs change nothing the learner wrote.
"""

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from .course_files import course_dir

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DIR", "MANIFEST", "KERNEL_NAME", "KERNEL_DISPLAY_NAME", "start", "register_kernel",
           "kernel_dir", "configure", "run"]

DEFAULT_DIR = "mhacourse-course"
MANIFEST = ".mhacourse-manifest.json"
KERNEL_NAME = "mhacourse"
KERNEL_DISPLAY_NAME = "mhacourse (MLX)"
NEW_SUFFIX = ".new"


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _course_files(kinds):
    """``{relative path: source path}`` for every file of the given kinds (hidden files left out)."""
    files = {}
    for kind in kinds:
        root = course_dir(kind)
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            files[(Path(kind) / relative).as_posix()] = path
    return files


def _new_name(relative):
    path = Path(relative)
    return (path.parent / f"{path.stem}{NEW_SUFFIX}{path.suffix}").as_posix()


def _read_manifest(folder):
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a manifest mhacourse wrote ({error}); move it away and run again") from None
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _write_manifest(folder, files):
    from . import __version__

    data = {"written_by": f"mhacourse {__version__}",
            "note": "sha256 of each file as mhacourse start wrote it; a file that differs was edited",
            "files": dict(sorted(files.items()))}
    (folder / MANIFEST).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def start(folder, solutions=False, update=False):
    """Copy the course into ``folder`` without ever overwriting an edited file.

    Args:
        folder (str or Path): the working folder (created if needed).
        solutions (bool, optional): also copy ``solutions/``. Default: ``False``.
        update (bool, optional): bring new versions of the course's files:
            replace the untouched ones, write ``NAME.new.ipynb`` beside the
            edited ones. Default: ``False``.

    Returns:
        dict: relative paths by what happened to them: ``copied`` (new or
        missing), ``updated`` (untouched, replaced by a new version),
        ``new_copies`` (``(edited file, NAME.new file)`` pairs), ``outdated``
        (a newer version exists; run with ``update``), ``kept`` (edited, and
        the course has nothing newer) and ``unchanged``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder)
    kinds = ["notebooks", "exercises"] + (["solutions"] if solutions else [])
    done = {"copied": [], "updated": [], "new_copies": [], "outdated": [], "kept": [], "unchanged": []}
    for relative, source in _course_files(kinds).items():
        data = source.read_bytes()
        new = _digest(data)
        target = folder / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            manifest[relative] = new
            done["copied"].append(relative)
            continue
        current = _digest(target.read_bytes())
        written = manifest.get(relative)
        if current == new:
            manifest[relative] = new
            done["unchanged"].append(relative)
        elif written is not None and current == written:  # untouched since we wrote it
            if update:
                target.write_bytes(data)
                manifest[relative] = new
                done["updated"].append(relative)
            else:
                done["outdated"].append(relative)
        elif written == new:  # edited, and the course has nothing newer than what we wrote
            done["kept"].append(relative)
        elif update:  # edited (or not ours), and the course has another version: put it beside
            copy = _new_name(relative)
            (folder / copy).write_bytes(data)
            done["new_copies"].append((relative, copy))
        else:
            done["outdated"].append(relative)
    _write_manifest(folder, manifest)
    return done


def kernel_dir(where="auto"):
    """The folder the course's kernelspec goes to.

    Args:
        where (str): ``"env"`` (this Python environment's Jupyter data folder,
            ``sys.prefix/share/jupyter/kernels``), ``"user"`` (the user's
            Jupyter data folder) or ``"auto"``: ``"env"`` inside a virtual or
            conda environment, else ``"user"``.

    Returns:
        Path: ``.../kernels/mhacourse``.
    """
    if where == "auto":
        in_env = sys.prefix != getattr(sys, "base_prefix", sys.prefix) or os.environ.get("CONDA_PREFIX") == sys.prefix
        where = "env" if in_env else "user"
    if where == "env":
        return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    if where == "user":
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "kernels" / KERNEL_NAME
    raise ValueError(f"where must be 'auto', 'env' or 'user', got {where!r}")


def register_kernel(where="auto"):
    """Register the course's kernel, "mhacourse (MLX)", for this Python.

    It is ipykernel's spec (``python -m ipykernel_launcher``) started, on
    Linux, through ``mhacourse/blas.py exec``, which preloads the optimised
    BLAS found on the machine (see :func:`mhacourse.blas.kernelspec_argv`). Running
    it again rewrites the same spec.

    Args:
        where (str, optional): see :func:`kernel_dir`. Default: ``"auto"``.

    Returns:
        Path: the kernelspec's folder.
    """
    from ipykernel.kernelspec import write_kernel_spec

    from . import blas

    target = kernel_dir(where)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    write_kernel_spec(str(target), overrides={"display_name": KERNEL_DISPLAY_NAME})
    blas.install_kernelspec(str(target))
    return target


def configure(parser):
    """Add ``mhacourse start``'s arguments to ``parser``."""
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR,
                        help=f"the working folder (default: ./{DEFAULT_DIR}); created if needed")
    parser.add_argument("--solutions", action="store_true", help="also copy the worked solutions")
    parser.add_argument("--update", action="store_true",
                        help="bring new versions: replace untouched notebooks, write NAME.new.ipynb beside edited ones")
    kernel = parser.add_mutually_exclusive_group()
    kernel.add_argument("--kernel", choices=("auto", "env", "user"), default="auto",
                        help="where to register the course's Jupyter kernel: this environment, the user's "
                             "Jupyter folder, or auto (the environment inside a venv or conda env)")
    kernel.add_argument("--no-kernel", action="store_true", help="do not register the kernel")
    return parser


def run(args):
    """Run ``mhacourse start``."""
    folder = Path(args.dir)
    try:
        done = start(folder, solutions=args.solutions, update=args.update)
    except (FileNotFoundError, ValueError, OSError) as error:
        log.error("%s", error)
        return 2
    for relative in done["copied"]:
        print(f"copied   {relative}")
    for relative in done["updated"]:
        print(f"updated  {relative}")
    for relative, copy in done["new_copies"]:
        print(f"kept your edits to {relative}; the new version is in {copy}")
    if done["outdated"]:
        print(f"{len(done['outdated'])} file(s) have a newer version in the course: "
              f"`mhacourse start {args.dir} --update` brings them (never over your edits):")
        for relative in done["outdated"]:
            print(f"  {relative}")
    print(f"{folder.resolve()}: {len(done['copied'])} copied, {len(done['updated'])} updated, "
          f"{len(done['new_copies'])} new version(s) beside your edits, "
          f"{len(done['unchanged']) + len(done['kept'])} left as they were")
    if not args.no_kernel:
        try:
            spec = register_kernel(args.kernel)
        except (ImportError, OSError) as error:
            log.error("could not register the kernel: %s", error)
            return 1
        print(f"kernel   '{KERNEL_DISPLAY_NAME}' registered in {spec}")
    print(f"Next: mhacourse lab --dir {args.dir} --open notebooks/00_mlx_primer.ipynb "
          f"(or open {args.dir}/notebooks in any Jupyter and pick the kernel '{KERNEL_DISPLAY_NAME}')")
    return 0
