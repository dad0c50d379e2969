"""Predictions must not give their answer away.

A *prediction* is a markdown cell with a line that starts with ``**Predict`` (in the lessons
``**Predict.**`` or ``**Predict, then run.**``). The learner reads it, writes an answer down, then runs
the *run cell*, the first code cell after it. The answer is checked in the *answer cell*, the first
code cell after the run cell that asserts something. The rules, for every prediction in
``notebooks/`` and ``exercise_sources/``:

1. the run cell asserts nothing (an assert beside the code shows the answer before it runs);
2. some later cell asserts the answer;
3. no value that the answer cell's asserts compare with (``== 24``, ``== (4, 5, 3, 2)``,
   ``== "NaN"``: a number other than 0 and 1, a string, a tuple or list of numbers) appears in the
   prediction's text or in the run cell's comments, unless the run cell's code itself uses it (then
   it is an input of the question, not its answer);
4. every lesson holds at least two predictions.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "exercise_sources")
PROMPT = re.compile(r"^\*\*Predict", re.MULTILINE)


def notebooks():
    return [p for folder in FOLDERS for p in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))]


def cells(path):
    return [(c["cell_type"], "".join(c["source"]), c.get("id", str(i)))
            for i, c in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"])]


def asserts(source):
    """The assert statements of a cell (``raise AssertionError`` counts as one)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            found.append(node)
        elif isinstance(node, ast.Raise) and node.exc is not None and "AssertionError" in ast.unparse(node.exc):
            found.append(node)
    return found


def predictions(path):
    """``(prompt, run cell, answer cell or None)`` for every prediction of a notebook."""
    found = []
    all_cells = cells(path)
    for i, (kind, text, cell_id) in enumerate(all_cells):
        if kind != "markdown" or not PROMPT.search(text):
            continue
        later = [(j, c) for j, c in enumerate(all_cells) if j > i and c[0] == "code"]
        run = later[0][1] if later else None
        answer = next((c for _, c in later[1:] if asserts(c[1])), None)
        found.append(((text, cell_id), run, answer))
    return found


def _number(value):
    return str(int(value)) if float(value).is_integer() else repr(value)


def _constant(node):
    """A compared value as text and kind, or ``None`` when it is not a plain constant."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        node = ast.Constant(-node.operand.value) if isinstance(node.operand.value, (int, float)) else node
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool)
            for e in node.elts):
        return "sequence", ", ".join(_number(e.value) for e in node.elts)
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        if isinstance(node.value, (int, float)) and abs(node.value) not in (0, 1):
            return "number", _number(node.value)
        if isinstance(node.value, str) and len(node.value) >= 3:
            return "string", node.value
    return None


def answer_values(source):
    """The constants the answer cell's asserts compare with (``x == 24``, ``shape == (4, 5)``)."""
    values = []
    for node in asserts(source):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Compare):
                only_equal = all(isinstance(op, (ast.Eq, ast.Is)) for op in sub.ops)
                for side in [sub.left, *sub.comparators]:
                    found = _constant(side)
                    if found and (found[0] != "string" or only_equal):   # "x" in message: not an answer
                        values.append(found)
    return values


def number_pattern(text):
    return re.compile(r"(?<![\w.])" + re.escape(text) + r"(?:\.0+)?(?![\w]|\.\d)")


def given_away(prompt, run_source, answer_source):
    """The asserted values of the answer cell that the prompt or the run cell's comments show."""
    visible_run = "\n".join(line.split("#", 1)[1] for line in run_source.splitlines() if "#" in line)
    code = "\n".join(line.split("#", 1)[0] for line in run_source.splitlines())
    visible = prompt + "\n" + visible_run
    squeezed = re.sub(r"\s+", "", visible)
    leaks = []
    for kind, value in answer_values(answer_source):
        if kind == "sequence":
            flat = value.replace(" ", "")
            if ("(" + flat + ")") in squeezed or ("[" + flat + "]") in squeezed or ("(" + flat + ",)") in squeezed:
                leaks.append(f"({value})")
        elif kind == "number":
            if number_pattern(value).search(visible) and not number_pattern(value).search(code):
                leaks.append(value)
        elif re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", visible) and value not in code:
            leaks.append(repr(value))
    return sorted(set(leaks))


def problems(path):
    found = []
    for (prompt, prompt_id), run, answer in predictions(path):
        where = f"{path.parent.name}/{path.name} prediction {prompt_id}"
        if run is None:
            found.append(f"{where}: no code cell to run after it")
            continue
        if asserts(run[1]):
            found.append(f"{where}: its run cell {run[2]} asserts (move the asserts to a later cell)")
        if answer is None:
            found.append(f"{where}: no later cell asserts the answer")
            continue
        leaks = given_away(prompt, run[1], answer[1])
        if leaks:
            found.append(f"{where}: {', '.join(leaks)} (asserted in {answer[2]}) already shown before it runs")
    return found


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_prediction_gives_its_answer_away(path):
    assert not problems(path), "\n".join(problems(path))


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_lesson_asks_for_at_least_two_predictions(path):
    assert len(predictions(path)) >= 2, f"{path.name}: {len(predictions(path))} prediction(s)"


def test_the_check_catches_answers_given_away(tmp_path):
    def notebook(*cell_list):
        nb = {"cells": [{"cell_type": kind, "source": text, "metadata": {}, "id": f"c{i}"}
                        for i, (kind, text) in enumerate(cell_list)], "metadata": {}, "nbformat": 4,
              "nbformat_minor": 5}
        path = tmp_path / "notebooks" / "99_x.ipynb"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(nb))
        return path

    prompt = ("markdown", "**Predict, then run.** What shape does `q4.T` have?")
    same_cell = notebook(prompt, ("code", "assert q4.T.shape == (4, 5, 3, 2)"))
    assert any("asserts" in p for p in problems(same_cell))
    comment = notebook(prompt, ("code", "print(q4.T.shape)  # (4, 5, 3, 2)"),
                       ("code", "assert q4.T.shape == (4, 5, 3, 2)"))
    assert any("(4, 5, 3, 2)" in p for p in problems(comment))
    number = notebook(("markdown", "**Predict.** The sum at row 2, column 3? (It is 24.)"),
                      ("code", "total = column + row"), ("code", "assert total[2, 3] == 24"))
    assert any("24" in p for p in problems(number))
    nan = notebook(prompt, ("code", "print(x)  # 0 / 0 = NaN"), ("code", "assert str(x) == 'NaN'"))
    assert any("'NaN'" in p for p in problems(nan))
    missing = notebook(prompt, ("code", "print(q4.T.shape)"))
    assert any("no later cell" in p for p in problems(missing))
    fine = notebook(("markdown", "**Predict.** With tiles of 64, how much smaller?"),
                    ("code", "L, tile = 4096, 64\nprint(L * L // (L * tile))"),
                    ("code", "assert L * L // (L * tile) == 64"))
    assert problems(fine) == []
