"""Reading what students submitted: the files, their notebooks, their lesson and their cells.

Nothing here runs a submission. Every file is read once; whatever it holds,
a file that is not a notebook ends as ``invalid-notebook`` and a symbolic
link as ``refused``, never as an error of the grader.
"""

import json
import os
import re
from collections import Counter
from functools import cache
from pathlib import Path

import nbformat

from mhacourse.grading import textio

MAX_NOTEBOOK_BYTES = 64 * 2**20


_LESSON_IN_NAME = re.compile(r"^(\d{2})(?:[_\-. ]|$)")


class InvalidNotebook(ValueError):
    """The submission is not a readable version 4 notebook."""


class _Refused(ValueError):
    """A submission the grader will not open (a symbolic link)."""


def collect_submissions(paths):
    """Expand notebooks and folders of notebooks into a sorted list of files.

    Symbolic links are never followed: a linked notebook or folder is listed
    as it is, and grading refuses it (status ``refused``), so a link to another
    student's work or to the course's solutions earns nothing.

    Args:
        paths (list): notebooks (``.ipynb``) or folders searched recursively.

    Returns:
        list(Path): the notebooks (and links), checkpoints excluded.

    Raises:
        ValueError: for a path that does not exist or is not a notebook.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            inside = []
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
                inside += [Path(folder) / d for d in dirs if (Path(folder) / d).is_symlink()]
                inside += [Path(folder) / f for f in files if f.endswith(".ipynb")]
            found += sorted(inside)
        elif path.is_symlink() or (path.is_file() and path.suffix == ".ipynb"):
            found.append(path)
        else:
            raise ValueError(f"SUBMISSION must be a .ipynb file or a folder, got {textio.printable(path)!r}")
    return found


def read_submission(data):
    """Parse a submission's bytes into a notebook, without trusting its shape.

    Args:
        data (bytes): the file's content.

    Returns:
        tuple(NotebookNode, list): the notebook, and the raw cell ids (None
        where a cell has none).

    Raises:
        InvalidNotebook: when the bytes are not a version 4 notebook.
    """
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        return _parse_submission(data)
    except InvalidNotebook:
        raise
    except Exception as error:  # noqa: BLE001 - however malformed: never a grader error
        raise InvalidNotebook(f"not a readable notebook ({type(error).__name__})") from None


def _parse_submission(data):
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidNotebook(f"invalid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise InvalidNotebook("not a version 4 Jupyter notebook")
    cells, ids = [], []
    for index, cell in enumerate(raw["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise InvalidNotebook(f"cell {index} is not a notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(part, str) for part in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise InvalidNotebook(f"cell {index} has no text source")
        ids.append(cell.get("id") if isinstance(cell.get("id"), str) else None)
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
        cells.append(maker.get(cell["cell_type"], nbformat.v4.new_raw_cell)(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    metadata = raw.get("metadata")
    nb.metadata = nbformat.from_dict(metadata) if isinstance(metadata, dict) else nbformat.NotebookNode()
    return nb, ids


def identify_lesson(nb, path, known, forced=None):
    """Which lesson a submission belongs to.

    Args:
        nb (NotebookNode or None): the submission (None if unreadable).
        path (Path): its file, whose name may start with the lesson (``02_...``).
        known (collection): the lessons the registry knows.
        forced (str, optional): the lesson given on the command line.

    Returns:
        tuple(str or None, list(str)): the lesson and notes for the report.
    """
    if forced is not None:
        return forced, []
    meta = None
    if nb is not None:
        info = nb.metadata.get("mhacourse")
        if isinstance(info, dict) and str(info.get("lesson")) in known:
            meta = str(info.get("lesson"))
    match = _LESSON_IN_NAME.match(Path(path).name)
    named = match[1] if match and match[1] in known else None
    notes = []
    if meta and named and meta != named:
        notes.append(f"metadata says lesson {meta}, the file name {named}: graded as {meta}")
    return meta or named, notes


def _defined_names(source):
    """Names a cell binds at top level (functions, classes, assignments): its content markers."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"^(?:def|class)\s+(\w+)", source, flags=re.M))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def _written_tags(source):
    """The written answers (graded by hand) a markdown cell holds, by their tag line: its content markers."""
    from mhacourse.grading.written import _TAG

    return {f"written:{match['id']}" for match in _TAG.finditer(source)}


def structure_notes(nb, ids, lesson):
    """Deleted and duplicated cells, compared with the generated exercise notebook.

    A cell of the exercise notebook is found by its id, or by its text, or (an
    answer cell, whose text the learner changed) by the names it defines (a
    written answer's cell: by its tag line): a notebook whose cells were pasted
    into a new file (new ids) matches too.

    Returns:
        tuple(list, list): indices (in the exercise notebook) of missing cells,
        and of cells that appear more than once in the submission.
    """
    reference = _reference_cells(lesson)
    if reference is None:
        return [], []
    id_counts = Counter(cell_id for cell_id in ids if cell_id)
    source_counts = Counter(cell.source.strip() for cell in nb.cells if cell.source.strip())
    defined = Counter()
    for cell in nb.cells:
        if cell.cell_type == "code":
            defined.update(_defined_names(cell.source))
        elif cell.cell_type == "markdown":
            defined.update(_written_tags(cell.source))
    missing, duplicated = [], []
    for index, (cell_id, _, source, is_exercise, names) in enumerate(reference):
        by_source = 0 if is_exercise or not source else source_counts[source]
        by_marker = max((defined[name] for name in names), default=0) if is_exercise else 0
        if id_counts[cell_id] == 0 and by_source == 0 and by_marker == 0:
            missing.append(index)
        if id_counts[cell_id] > 1 or by_source > 1:
            duplicated.append(index)
    return missing, duplicated


@cache
def _reference_cells(lesson):
    """The cells of the generated exercise notebook for ``lesson``, or None."""
    from mhacourse.grading.authoring import build

    for path in build.all_source_paths():
        source = build.read_source(path)
        if str(source.metadata.get("mhacourse", {}).get("lesson")) == lesson:
            exercise, _ = build.build_notebook(source, path=path)
            return tuple(
                (
                    cell["id"],
                    cell.cell_type,
                    cell.source.strip(),
                    (cell.cell_type == "code" and build.STUB[1] in cell.source) or bool(_written_tags(cell.source)),
                    frozenset(_defined_names(cell.source)) if cell.cell_type == "code"
                    else frozenset(_written_tags(cell.source)),
                )
                for cell in exercise.cells
            )
    return None
