"""Exercise numbers, from one place: the headings of the exercise source notebooks.

Each exercise source (``exercise_sources/NN_*.ipynb``, and those of an
instructor's course folders) introduces its exercises with a heading
``## Exercise NN.M — title``, followed by the cell whose solution defines the
answer. The number of an exercise is the heading before its answer cell; the
lesson text, the exercise notebook, the grader's reports and every export
(Gradescope's test ``number`` included) take it from
:func:`mhacourse.grading.registry.number_of`,
and ``tests/test_numbering.py`` checks that the headings count 1, 2, 3… in
notebook order and that lesson text citing a number means that exercise.
"""

import json
import re
from pathlib import Path

__all__ = ["numbers_in", "numbers_for", "source_folders", "HEADING"]

HEADING = re.compile(r"^#+\s*Exercise\s+(\d{2})\.(\d+)\b", flags=re.M)


def source_folders(course_folders=()):
    """The folders of exercise sources: the course's, then ``exercise_sources/`` of each of
    ``course_folders`` (an instructor's course folders, :func:`mhacourse.grading.registry.course_folders`)."""
    from mhacourse.course_files import course_dir

    folders = []
    try:
        folders.append(course_dir("exercise_sources"))
    except FileNotFoundError:
        pass
    folders += [Path(folder) / "exercise_sources" for folder in course_folders]
    return tuple(f for f in folders if f.is_dir())


def _defined(source):
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))} | {
        target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
        if isinstance(target, ast.Name)}


def numbers_in(path, answer_names):
    """``{answer name: "NN.M"}`` from one source notebook: each answer takes the heading before it."""
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    found, current = {}, None
    for cell in cells:
        source = "".join(cell.get("source", "")) if isinstance(cell.get("source"), list) else cell.get("source", "")
        if cell.get("cell_type") == "markdown":
            heading = list(HEADING.finditer(source))
            if heading:
                current = f"{heading[-1].group(1)}.{heading[-1].group(2)}"
        elif cell.get("cell_type") == "code" and current is not None:
            for name in _defined(source) & set(answer_names):
                found.setdefault(name, current)
    return found


def numbers_for(exercise_list, folders):
    """``{exercise id: "NN.M"}`` of ``exercise_list`` from the source notebooks in ``folders``."""
    by_lesson = {}
    for exercise in exercise_list:
        by_lesson.setdefault(exercise.lesson, []).append(exercise)
    numbers = {}
    for folder in folders:
        for path in sorted(folder.glob("*.ipynb")):
            lesson = path.name[:2]
            listed = by_lesson.get(lesson, [])
            named = numbers_in(path, [e.answer_name for e in listed])
            for exercise in listed:
                if exercise.answer_name in named:
                    numbers.setdefault(exercise.id, named[exercise.answer_name])
    return numbers
