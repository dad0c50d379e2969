"""Keep committed notebooks clean: no outputs, no execution counts, no widget state.

Lessons, exercises and solutions are committed as sources. Outputs make diffs
noisy, can leak a solution into an exercise, and go stale as soon as the code
changes, so ``make strip`` removes them and ``tests/test_notebooks_clean.py``
fails while any are left.

``strip`` also makes every notebook name the course's kernel, "mhacourse (MLX)"
(:data:`COURSE_KERNELSPEC`), whose launcher preloads the optimised BLAS on Linux
(``mhacourse start`` and ``make venv`` register it). ``build-exercises`` copies
the kernelspec of each source, so exercises and solutions follow.

Usage::

    python -m mhacourse.notebooks strip [PATH ...]   # rewrite dirty notebooks in place
    python -m mhacourse.notebooks check [PATH ...]   # list problems, exit 1 if any

Without paths, both commands walk :data:`NOTEBOOK_DIRS` of the checkout this
package was imported from (never the current folder).
"""

import argparse
import copy
import sys
from pathlib import Path

import nbformat

__all__ = ["NOTEBOOK_DIRS", "COURSE_KERNELSPEC", "notebook_paths", "problems", "strip", "set_kernelspec",
           "strip_file", "main"]

NOTEBOOK_DIRS = ("notebooks", "exercises", "solutions", "exercise_sources")

# The kernel every course notebook asks for (mhacourse.start.register_kernel installs it).
COURSE_KERNELSPEC = {"name": "mhacourse", "display_name": "mhacourse (MLX)", "language": "python"}

# Cell metadata written by Jupyter or nbclient when a cell runs.
_RUN_METADATA = ("execution", "collapsed", "scrolled")


def notebook_paths(root=None):
    """Every ``.ipynb`` file under the course's notebook folders.

    Args:
        root (str or Path, optional): The repository root. Default: the
            checkout this package was imported from.

    Returns:
        list[Path]: Sorted paths, checkpoints excluded.

    Raises:
        FileNotFoundError: with no ``root`` and no checkout (an installed wheel).
    """
    if root is None:
        from .course_files import checkout_root

        root = checkout_root()
        if root is None:
            raise FileNotFoundError("no checkout to clean (mhacourse runs from an installed wheel): "
                                    "name the notebooks or folders to strip or check")
    root = Path(root)
    paths = []
    for folder in NOTEBOOK_DIRS:
        paths.extend(
            p for p in (root / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
        )
    return sorted(paths)


def problems(nb):
    """What would have to be stripped from a notebook.

    Args:
        nb (NotebookNode): A notebook read with ``nbformat``.

    Returns:
        list[str]: One line per problem (empty when the notebook is clean).
    """
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell.execution_count}")
        stale = [key for key in _RUN_METADATA if key in cell.get("metadata", {})]
        if stale:
            found.append(f"cell {index}: run metadata {stale}")
    if "widgets" in nb.metadata:
        found.append("notebook metadata: saved widget state")
    return found


def strip(nb):
    """Remove outputs, execution counts and run metadata from a notebook, in place.

    Args:
        nb (NotebookNode): A notebook read with ``nbformat``.

    Returns:
        NotebookNode: The same notebook, for chaining.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        for key in _RUN_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    return nb


def set_kernelspec(nb, kernelspec=None):
    """Make a notebook ask for the course's kernel, in place.

    Args:
        nb (NotebookNode): A notebook read with ``nbformat``.
        kernelspec (dict, optional): Default: :data:`COURSE_KERNELSPEC`.

    Returns:
        NotebookNode: The same notebook, for chaining.
    """
    nb.metadata["kernelspec"] = nbformat.from_dict(dict(kernelspec or COURSE_KERNELSPEC))
    return nb


def strip_file(path, kernelspec=True):
    """Strip one notebook file and name the course's kernel, rewriting it only if something changed.

    Args:
        path (str or Path): The ``.ipynb`` file.
        kernelspec (bool, optional): Also set :data:`COURSE_KERNELSPEC`. Default: True.

    Returns:
        bool: True if the file was rewritten.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    before = copy.deepcopy(nb)
    strip(nb)
    if kernelspec:
        set_kernelspec(nb)
    if nb == before:
        return False
    nbformat.write(nb, path)
    return True


def _expand(paths):
    if not paths:
        return notebook_paths()
    expanded = []
    for p in map(Path, paths):
        if p.is_dir():
            expanded.extend(sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts))
        elif p.suffix == ".ipynb":
            expanded.append(p)
        else:
            raise ValueError(f"path must be a notebook or a folder, got {str(p)!r}.")
    return expanded


def main(argv=None):
    """Command line: ``strip`` or ``check`` notebooks; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mhacourse.notebooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("strip", "check"))
    parser.add_argument("paths", nargs="*", help=f"notebooks or folders (default: {', '.join(NOTEBOOK_DIRS)})")
    args = parser.parse_args(argv)
    try:
        paths = _expand(args.paths)
    except FileNotFoundError as error:
        parser.error(str(error))
    if args.command == "strip":
        changed = [p for p in paths if strip_file(p)]
        for p in changed:
            print(f"stripped {p}")
        print(f"{len(changed)} of {len(paths)} notebook(s) stripped")
        return 0
    dirty = 0
    for p in paths:
        found = problems(nbformat.read(p, as_version=nbformat.NO_CONVERT))
        if found:
            dirty += 1
            print(f"{p}: " + "; ".join(found))
    print(f"{dirty} of {len(paths)} notebook(s) need `make strip`" if dirty else f"{len(paths)} notebook(s) clean")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
