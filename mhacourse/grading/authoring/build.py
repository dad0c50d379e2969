"""Generate ``exercises/`` and ``solutions/`` from ``exercise_sources/``.

Each source notebook holds the solution once, between marker lines inside
code cells::

    def split_heads(x, num_heads):
        ### BEGIN SOLUTION
        B, L, D = x.shape
        ...
        ### END SOLUTION

The solution notebook keeps the code and drops the marker lines. The exercise
notebook replaces each block, markers included, by a stub at the markers'
indentation::

        # YOUR CODE HERE
        raise NotImplementedError()

A written answer, graded by hand, is a markdown cell with one block between
``### BEGIN WRITTEN ANSWER <id> (N points)`` and ``### END WRITTEN ANSWER``
(:mod:`mhacourse.grading.written`): the solution notebook keeps the model
answer, the exercise notebook a placeholder; both keep a comment line naming
the question, by which the grader finds the student's answer.

Both are written without outputs, execution counts or run metadata (as
``make strip`` leaves a notebook), with the source's other metadata and its
cell ids, so that building twice gives the same bytes and
``mhacourse build-exercises --check`` can tell when a committed copy drifted.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

from mhacourse.grading import written
from mhacourse.notebooks import strip

SOURCES_DIR = "exercise_sources"
EXERCISES_DIR = "exercises"
SOLUTIONS_DIR = "solutions"

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$")
_END = re.compile(r"^(?P<indent>[ \t]*)### END SOLUTION[ \t]*$")
_ANY_MARKER = re.compile(r"(BEGIN|END)\s+SOLUTION")


class MarkerError(ValueError):
    """A solution marker is missing, misplaced or malformed.

    Attributes:
        path (str): the source notebook.
        cell_index (int or None): index of the offending cell (None when the
            problem concerns the whole notebook).
        line (int or None): 1-based line number inside the cell.
    """

    def __init__(self, message, *, path, cell_index, line=None):
        self.path = str(path)
        self.cell_index = cell_index
        self.line = line
        where = self.path
        if cell_index is not None:
            where += f": cell {cell_index}"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")


def split_solution(source, *, path="<source>", cell_index=0):
    """Split the source of one code cell into its exercise and solution forms.

    Args:
        source (str): the cell's source, possibly with solution markers.
        path (str): the notebook's path, used in error messages.
        cell_index (int): the cell's index, used in error messages.

    Returns:
        tuple(str, str, int): the exercise source, the solution source and
        the number of solution blocks found.

    Raises:
        MarkerError: on a BEGIN without END, an END without BEGIN, a nested
            BEGIN, an empty block, an END indented unlike its BEGIN, or a
            marker that is not alone on its line.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")

    def fail(message, line=None):
        raise MarkerError(message, path=path, cell_index=cell_index, line=line)

    exercise, solution = [], []
    open_line, open_indent, block_size, n_blocks = None, None, 0, 0
    for number, line in enumerate(source.split("\n"), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if open_line is not None:
                fail(f"nested '{BEGIN_MARKER}' (the block opened on line {open_line} is not closed)", number)
            open_line, open_indent, block_size = number, begin["indent"], 0
        elif end:
            if open_line is None:
                fail(f"'{END_MARKER}' without a matching '{BEGIN_MARKER}'", number)
            if end["indent"] != open_indent:
                fail(
                    f"'{END_MARKER}' is indented by {len(end['indent'])} characters but its "
                    f"'{BEGIN_MARKER}' on line {open_line} by {len(open_indent)}",
                    number,
                )
            if block_size == 0:
                fail("empty solution block", open_line)
            exercise.extend(open_indent + stub_line for stub_line in STUB)
            open_line, n_blocks = None, n_blocks + 1
        elif _ANY_MARKER.search(line):
            fail(
                f"malformed marker {line.strip()!r}: write '{BEGIN_MARKER}' or '{END_MARKER}' alone on its line", number
            )
        else:
            solution.append(line)
            if open_line is None:
                exercise.append(line)
            else:
                block_size += 1
    if open_line is not None:
        fail(f"'{BEGIN_MARKER}' without a matching '{END_MARKER}'", open_line)
    return "\n".join(exercise), "\n".join(solution), n_blocks


def _derived_cell_id(name, index):
    return hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:12]


def _clean_cell(cell, cell_id):
    cell = nbformat.from_dict(json.loads(json.dumps(cell)))
    cell["id"] = cell_id
    if cell["cell_type"] == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    elif "attachments" in cell and not cell["attachments"]:
        del cell["attachments"]
    return cell


def read_source(path):
    """Read a source notebook, keeping its cell ids (or deriving stable ones).

    Args:
        path (str or Path): the source notebook.

    Returns:
        nbformat.NotebookNode: the notebook in nbformat 4.5.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid notebook (invalid JSON: {error})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise ValueError(f"{path}: not a version 4 Jupyter notebook")
    for index, cell in enumerate(raw["cells"]):
        if not cell.get("id"):
            cell["id"] = _derived_cell_id(path.name, index)
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    raw["nbformat_minor"] = max(5, raw.get("nbformat_minor", 0))
    return nbformat.from_dict(raw)


def build_notebook(source_nb, path="<source>"):
    """Make the exercise and solution notebooks from one source notebook.

    Args:
        source_nb (nbformat.NotebookNode): the source, nbformat 4.5.
        path (str): the source's path, used in error messages.

    Returns:
        tuple(NotebookNode, NotebookNode): the exercise and the solution notebook.

    Raises:
        MarkerError: for malformed markers, a marker in a non-code cell, or a
            notebook with no solution block at all.
    """
    exercise_cells, solution_cells, n_blocks, written_ids = [], [], 0, set()
    for index, cell in enumerate(source_nb.cells):
        exercise, solution = _clean_cell(cell, cell["id"]), _clean_cell(cell, cell["id"])
        if cell.cell_type == "code":
            exercise.source, solution.source, found = split_solution(
                cell.source, path=path, cell_index=index
            )
            n_blocks += found
            for number, line in enumerate(cell.source.split("\n"), start=1):
                if written._ANY.search(line):
                    raise MarkerError("written-answer marker in a code cell (it belongs in a markdown cell)",
                                      path=path, cell_index=index, line=number)
        else:
            for number, line in enumerate(cell.source.split("\n"), start=1):
                if _ANY_MARKER.search(line):
                    raise MarkerError(
                        f"solution marker in a {cell.cell_type} cell (markers belong in code cells)",
                        path=path,
                        cell_index=index,
                        line=number,
                    )
            if cell.cell_type == "markdown":
                try:
                    exercise.source, solution.source, found = written.split_written(
                        cell.source, where=f"{path}: cell {index}")
                except written.WrittenMarkerError as error:
                    raise MarkerError(error.reason, path=path, cell_index=index, line=error.line) from None
                for written_id, _, _ in found:
                    if written_id in written_ids:
                        raise MarkerError(f"written answer {written_id!r} appears twice", path=path,
                                          cell_index=index)
                    written_ids.add(written_id)
        exercise_cells.append(exercise)
        solution_cells.append(solution)
    if n_blocks == 0:
        raise MarkerError("no solution markers in the whole notebook", path=path, cell_index=None)

    def notebook(cells):
        nb = nbformat.v4.new_notebook()
        nb.metadata = json.loads(json.dumps(source_nb.metadata))
        nb.nbformat, nb.nbformat_minor = 4, 5
        nb.cells = cells
        strip(nb)
        nbformat.validate(nb)
        return nb

    return notebook(exercise_cells), notebook(solution_cells)


def dumps(nb):
    """Serialise a notebook the same way every time.

    Args:
        nb (nbformat.NotebookNode): the notebook.

    Returns:
        str: JSON text (sorted keys, one-space indent) ending with a newline.
    """
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def project_root():
    """The folder that holds ``exercise_sources/``, ``exercises/`` and ``solutions/``.

    The checkout this package was imported from (an editable install), or the
    copy of the course inside an installed wheel (``mhacourse/_course``); see
    :func:`mhacourse.course_files.course_dir`. Never the current folder: pass
    ``--root`` to build another project's exercises.

    Raises:
        FileNotFoundError: when neither holds ``exercise_sources/``.
    """
    from mhacourse.course_files import course_dir

    return course_dir(SOURCES_DIR).parent


def source_paths(root):
    """The source notebooks under ``root/exercise_sources``, sorted by name."""
    sources = Path(root) / SOURCES_DIR
    if not sources.is_dir():
        raise FileNotFoundError(f"no {SOURCES_DIR}/ folder in {Path(root).resolve()}")
    return sorted(sources.glob("*.ipynb"))


def all_source_paths():
    """Every exercise source the registry knows: the course's, then those of instructors' course folders
    (``MHACOURSE_COURSE``, ``--course``)."""
    from mhacourse.grading.registry import course_folders

    paths = []
    try:
        paths += source_paths(project_root())
    except FileNotFoundError:
        pass
    for folder in course_folders():
        if (folder / SOURCES_DIR).is_dir():
            paths += source_paths(folder)
    return paths


def render(root):
    """Build every exercise and solution notebook in memory.

    Args:
        root (str or Path): the project root, holding ``exercise_sources/``.

    Returns:
        dict: relative path (``exercises/NN_name.ipynb``) to its JSON text.
    """
    root = Path(root)
    files = {}
    for path in source_paths(root):
        exercise, solution = build_notebook(read_source(path), path=path.relative_to(root))
        files[f"{EXERCISES_DIR}/{path.name}"] = dumps(exercise)
        files[f"{SOLUTIONS_DIR}/{path.name}"] = dumps(solution)
    return files


def _existing(root):
    return {
        f"{folder}/{path.name}"
        for folder in (EXERCISES_DIR, SOLUTIONS_DIR)
        for path in (Path(root) / folder).glob("*.ipynb")
    }


def stale_files(root, files=None):
    """Relative paths whose content differs from what the generator writes.

    Args:
        root (str or Path): the project root.
        files (dict, optional): the output of :func:`render`, if already made.

    Returns:
        list(str): sorted paths that are missing, different, or left over
        without a source.
    """
    root = Path(root)
    files = render(root) if files is None else files
    differ = {
        name
        for name, text in files.items()
        if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text
    }
    return sorted(differ | (_existing(root) - set(files)))


def write(root):
    """Write ``exercises/`` and ``solutions/`` and remove notebooks without a source.

    Args:
        root (str or Path): the project root.

    Returns:
        list(str): the relative paths that were written or removed.
    """
    root = Path(root)
    files = render(root)
    changed = stale_files(root, files)
    for name in changed:
        target = root / name
        if name in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[name], encoding="utf-8")
        else:
            target.unlink()
    return changed


def configure(parser):
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and list the files that differ from the generated ones",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project folder holding exercise_sources/ "
        "(default: the checkout, or the course inside the installed package)",
    )


def run(args):
    try:
        root = args.root if args.root is not None else project_root()
        if args.check:
            differ = stale_files(root)
            for name in differ:
                print(f"out of date: {name}")
            if differ:
                print(f"{len(differ)} file(s) differ; run `mhacourse build-exercises`", file=sys.stderr)
                return 1
            print(f"{EXERCISES_DIR}/ and {SOLUTIONS_DIR}/ are up to date")
            return 0
        changed = write(root)
    except (MarkerError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in changed:
        print(f"{'wrote' if (Path(root) / name).exists() else 'removed'} {name}")
    print(f"{len(changed)} file(s) changed")
    return 0
