"""The exercise generator: marker transformation, malformed markers, CLI, drift."""

import argparse
import json
from pathlib import Path

import nbformat
import pytest

from mhacourse.grading.authoring import build
from mhacourse.grading.authoring.build import MarkerError, build_notebook, split_solution

REPO = Path(__file__).resolve().parents[1]

SOLVED = """\
import mlx.core as mx

def split_heads(x, num_heads):
    ### BEGIN SOLUTION
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(0, 2, 1, 3)  # (B, H, L, Dh)
    ### END SOLUTION

def merge_heads(x):
    ### BEGIN SOLUTION
    B, H, L, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * Dh)  # (B, L, H * Dh)
    ### END SOLUTION"""


def test_solution_drops_only_the_marker_lines():
    _, solution, n_blocks = split_solution(SOLVED)
    assert n_blocks == 2
    assert "SOLUTION" not in solution
    assert solution.split("\n") == [line for line in SOLVED.split("\n") if "SOLUTION" not in line]


def test_exercise_replaces_each_block_by_an_indented_stub():
    exercise, _, _ = split_solution(SOLVED)
    assert exercise.split("\n") == [
        "import mlx.core as mx",
        "",
        "def split_heads(x, num_heads):",
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
        "",
        "def merge_heads(x):",
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
    ]
    namespace = {}
    exec(exercise.replace("import mlx.core as mx", ""), namespace)
    with pytest.raises(NotImplementedError):
        namespace["split_heads"](None, 2)


def test_stub_keeps_the_marker_indentation_at_top_level_and_deeper():
    source = ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\nclass A:\n    def f(self):\n"
              "        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION")
    exercise, solution, n_blocks = split_solution(source)
    assert n_blocks == 2
    assert exercise == (
        "# YOUR CODE HERE\nraise NotImplementedError()\nclass A:\n    def f(self):\n"
        "        # YOUR CODE HERE\n        raise NotImplementedError()"
    )
    assert solution == "x = 1\nclass A:\n    def f(self):\n        return 1"


def test_cell_without_markers_is_unchanged():
    assert split_solution("print(1)\n") == ("print(1)\n", "print(1)\n", 0)


@pytest.mark.parametrize(
    "source, line, words",
    [
        ("a = 1\n### BEGIN SOLUTION\nb = 2\n", 2, "without a matching '### END"),
        ("a = 1\nb = 2\n### END SOLUTION\n", 3, "without a matching '### BEGIN"),
        ("### BEGIN SOLUTION\na = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\n", 3, "nested"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n### END SOLUTION\n", 4, "indented by 0"),
        ("### BEGIN SOLUTION\n### END SOLUTION\n", 1, "empty solution block"),
        ("x = 1  ### BEGIN SOLUTION\nx = 2\n", 1, "malformed marker"),
        ("# BEGIN SOLUTION\nx = 2\n# END SOLUTION\n", 1, "malformed marker"),
    ],
    ids=["begin-without-end", "end-without-begin", "nested", "indentation", "empty", "inline", "one-hash"],
)
def test_malformed_markers_name_file_cell_and_line(source, line, words):
    with pytest.raises(MarkerError, match=words) as caught:
        split_solution(source, path="exercise_sources/02_x.ipynb", cell_index=7)
    error = caught.value
    assert (error.path, error.cell_index, error.line) == ("exercise_sources/02_x.ipynb", 7, line)
    assert str(error).startswith(f"exercise_sources/02_x.ipynb: cell 7, line {line}: ")
    assert isinstance(error, ValueError)


def test_split_solution_rejects_a_non_string():
    with pytest.raises(TypeError, match="source must be a str"):
        split_solution(["a = 1"])


def make_source(cells, lesson="02"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["mhacourse"] = {"lesson": lesson, "exercises": ["split_heads"]}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"src-{index}"
    return nb


def test_build_notebook_strips_outputs_keeps_ids_and_metadata():
    code = nbformat.v4.new_code_cell(SOLVED, execution_count=3, metadata={"tags": ["exercise"]})
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    source = make_source([nbformat.v4.new_markdown_cell("# Many heads"), code])
    exercise, solution = build_notebook(source, path="src.ipynb")
    for nb in (exercise, solution):
        assert [cell["id"] for cell in nb.cells] == ["src-0", "src-1"]
        assert nb.metadata == source.metadata
        assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
        assert nb.cells[1].metadata == {"tags": ["exercise"]}
        assert nb.cells[0].source == "# Many heads"
        nbformat.validate(nb)
    assert "raise NotImplementedError()" in exercise.cells[1].source
    assert "raise NotImplementedError()" not in solution.cells[1].source
    assert source.cells[1].outputs, "the source notebook itself must not be changed"


@pytest.mark.parametrize("cell_type", ["markdown", "raw"])
def test_marker_in_a_non_code_cell_is_an_error(cell_type):
    text = "Intro\n### BEGIN SOLUTION"
    cell = nbformat.v4.new_markdown_cell(text) if cell_type == "markdown" else nbformat.v4.new_raw_cell(text)
    source = make_source([nbformat.v4.new_code_cell(SOLVED), cell])
    with pytest.raises(MarkerError, match=f"in a {cell_type} cell") as caught:
        build_notebook(source, path="src.ipynb")
    assert (caught.value.cell_index, caught.value.line) == (1, 2)


def test_source_without_any_marker_is_an_error():
    source = make_source([nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(MarkerError, match="src.ipynb: no solution markers"):
        build_notebook(source, path="src.ipynb")


def main(argv):
    """Run ``mhacourse build-exercises`` the way the CLI dispatcher does."""
    parser = argparse.ArgumentParser(prog="mhacourse build-exercises")
    build.configure(parser)
    return build.run(parser.parse_args(argv))


def write_project(root, sources):
    (root / build.SOURCES_DIR).mkdir()
    for name, nb in sources.items():
        (root / build.SOURCES_DIR / name).write_text(nbformat.writes(nb))


def test_cli_writes_deterministically_checks_and_removes_leftovers(tmp_path, capsys):
    write_project(tmp_path, {"02_heads.ipynb": make_source([nbformat.v4.new_code_cell(SOLVED)])})
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date: exercises/02_heads.ipynb" in capsys.readouterr().out
    assert main(["--root", str(tmp_path)]) == 0
    first = {p: p.read_bytes() for p in tmp_path.glob("*/02_heads.ipynb")}
    assert len(first) == 3
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert build.write(tmp_path) == []
    assert {p: p.read_bytes() for p in tmp_path.glob("*/02_heads.ipynb")} == first

    exercise = tmp_path / "exercises" / "02_heads.ipynb"
    exercise.write_text(exercise.read_text().replace("YOUR CODE HERE", "my answer"))
    (tmp_path / "solutions" / "99_orphan.ipynb").write_text("{}")
    capsys.readouterr()
    assert main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "exercises/02_heads.ipynb" in out and "solutions/99_orphan.ipynb" in out
    assert "solutions/02_heads.ipynb" not in out
    assert sorted(build.write(tmp_path)) == ["exercises/02_heads.ipynb", "solutions/99_orphan.ipynb"]
    assert not (tmp_path / "solutions" / "99_orphan.ipynb").exists()
    assert exercise.read_bytes() == first[exercise]


def test_cli_reports_a_malformed_source_and_writes_nothing(tmp_path, capsys):
    good = make_source([nbformat.v4.new_code_cell(SOLVED)])
    bad = make_source([nbformat.v4.new_markdown_cell("hi"), nbformat.v4.new_code_cell("### END SOLUTION")])
    write_project(tmp_path, {"01_good.ipynb": good, "02_bad.ipynb": bad})
    assert main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exercise_sources/02_bad.ipynb: cell 1, line 1" in err
    assert not (tmp_path / "exercises").exists()


def test_sources_without_cell_ids_get_stable_derived_ids(tmp_path):
    nb = make_source([nbformat.v4.new_code_cell(SOLVED)])
    raw = json.loads(nbformat.writes(nb))
    raw["nbformat_minor"] = 4
    del raw["cells"][0]["id"]
    (tmp_path / "src.ipynb").write_text(json.dumps(raw))
    ids = {build_notebook(build.read_source(tmp_path / "src.ipynb"))[0].cells[0]["id"] for _ in range(2)}
    assert len(ids) == 1


def test_committed_exercises_and_solutions_match_their_sources():
    sources = build.source_paths(REPO)
    assert sources, "exercise_sources/ holds no notebook"
    differ = build.stale_files(REPO)
    assert not differ, f"out of date (run `make exercises`): {differ}"
