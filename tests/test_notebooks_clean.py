"""Committed notebooks carry no outputs, no execution counts and no widget state."""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mhacourse.notebooks import NOTEBOOK_DIRS, main, notebook_paths, problems, strip, strip_file

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = notebook_paths(ROOT)


@pytest.mark.parametrize("path", COMMITTED, ids=[str(p.relative_to(ROOT)) for p in COMMITTED])
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    found = problems(nb)
    assert not found, f"{path.relative_to(ROOT)} is not stripped (run `make strip`): " + "; ".join(found)


def test_lessons_exist():
    assert any(p.parent.name == "notebooks" for p in COMMITTED), "no lesson notebooks found"


def _executed_notebook():
    code = new_code_cell("print(1)\n1 + 1", execution_count=3)
    code.outputs = [
        new_output("stream", name="stdout", text="1\n"),
        new_output("execute_result", data={"text/plain": "2"}, execution_count=3),
    ]
    code.metadata["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
    code.metadata["tags"] = ["keep-me"]
    nb = new_notebook(cells=[new_markdown_cell("# Title"), code, new_code_cell("x = 1", execution_count=4)])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_problems_finds_outputs_counts_and_widget_state():
    found = problems(_executed_notebook())
    text = "\n".join(found)
    assert "cell 1: 2 output(s)" in text
    assert "cell 1: execution_count 3" in text
    assert "cell 2: execution_count 4" in text
    assert "run metadata" in text and "widget state" in text


def test_strip_removes_only_what_a_run_adds():
    nb = strip(_executed_notebook())
    assert problems(nb) == []
    assert [c.source for c in nb.cells] == ["# Title", "print(1)\n1 + 1", "x = 1"]
    assert nb.cells[1].metadata["tags"] == ["keep-me"]
    assert nb.metadata["kernelspec"]["name"] == "python3"
    nbformat.validate(nb)


def test_strip_file_rewrites_only_dirty_files(tmp_path):
    path = tmp_path / "lesson.ipynb"
    nbformat.write(_executed_notebook(), path)
    assert strip_file(path) is True
    on_disk = json.loads(path.read_text())
    assert all(c.get("outputs", []) == [] for c in on_disk["cells"])
    assert all(c.get("execution_count") is None for c in on_disk["cells"] if c["cell_type"] == "code")
    mtime = path.stat().st_mtime_ns
    assert strip_file(path) is False
    assert path.stat().st_mtime_ns == mtime


def test_command_line_check_then_strip(tmp_path, capsys):
    folder = tmp_path / NOTEBOOK_DIRS[0]
    folder.mkdir()
    path = folder / "00_x.ipynb"
    nbformat.write(_executed_notebook(), path)
    assert main(["check", str(folder)]) == 1
    assert "00_x.ipynb" in capsys.readouterr().out
    assert main(["strip", str(path)]) == 0
    assert main(["check", str(folder)]) == 0
    assert notebook_paths(tmp_path) == [path]


def test_command_line_rejects_other_files(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="notebook or a folder"):
        main(["check", str(other)])
