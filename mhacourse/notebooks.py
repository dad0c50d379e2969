"""Keep committed notebooks clean: no outputs, no execution counts, no widget state.

Lessons, exercises and solutions are committed as sources. Outputs make diffs
noisy, can leak a solution into an exercise, and go stale as soon as the code
changes, so ``make strip`` removes them and ``tests/test_notebooks_clean.py``
fails while any are left.

Usage::

    python -m mhacourse.notebooks strip [PATH ...]   # rewrite dirty notebooks in place
    python -m mhacourse.notebooks check [PATH ...]   # list problems, exit 1 if any

Without paths, both commands walk :data:`NOTEBOOK_DIRS` under the current directory.
"""

import argparse
import copy
import sys
from pathlib import Path

import nbformat

__all__ = ["NOTEBOOK_DIRS", "notebook_paths", "problems", "strip", "strip_file", "main"]

NOTEBOOK_DIRS = ("notebooks", "exercises", "solutions", "exercise_sources")

# Cell metadata written by Jupyter or nbclient when a cell runs.
_RUN_METADATA = ("execution", "collapsed", "scrolled")


def notebook_paths(root="."):
    """Every ``.ipynb`` file under the course's notebook folders.

    Args:
        root (str or Path, optional): The repository root. Default: ``"."``.

    Returns:
        list[Path]: Sorted paths, checkpoints excluded.
    """
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


def strip_file(path):
    """Strip one notebook file, rewriting it only if something changed.

    Args:
        path (str or Path): The ``.ipynb`` file.

    Returns:
        bool: True if the file was rewritten.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    before = copy.deepcopy(nb)
    strip(nb)
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
    paths = _expand(args.paths)
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
