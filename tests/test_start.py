"""`mhacourse start`: copies the course, never overwrites a learner's edits, and `--update` says what it did.

The course is a small fake one (two lessons, one exercise, one solution) in a temporary folder, so
that a "new version" can be made by editing it; `course_dir` is pointed at it.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest

from mhacourse import cli, course_files, start


def notebook(text):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell("x = 1")])
    return nbformat.writes(nb) + "\n"


@pytest.fixture()
def course(tmp_path, monkeypatch):
    root = tmp_path / "course"
    files = {"notebooks/00_primer.ipynb": "primer v1", "notebooks/01_heads.ipynb": "heads v1",
             "exercises/01_heads.ipynb": "exercise v1", "solutions/01_heads.ipynb": "solution v1"}
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(notebook(text))
    (root / "notebooks" / ".ipynb_checkpoints").mkdir()
    (root / "notebooks" / ".ipynb_checkpoints" / "00_primer-checkpoint.ipynb").write_text("{}")
    (root / "exercise_sources").mkdir()
    monkeypatch.setattr(start, "course_dir", lambda kind: root / kind)
    return root


def run_start(*argv):
    return cli.main(["start", *map(str, argv), "--no-kernel"])


def test_start_copies_lessons_and_exercises_and_solutions_only_when_asked(course, tmp_path, capsys):
    work = tmp_path / "work"
    assert run_start(work) == 0
    copied = sorted(p.relative_to(work).as_posix() for p in work.rglob("*.ipynb"))
    assert copied == ["exercises/01_heads.ipynb", "notebooks/00_primer.ipynb", "notebooks/01_heads.ipynb"]
    assert (work / "notebooks/01_heads.ipynb").read_bytes() == (course / "notebooks/01_heads.ipynb").read_bytes()
    assert "3 copied" in capsys.readouterr().out
    assert run_start(work, "--solutions") == 0
    assert (work / "solutions/01_heads.ipynb").is_file()
    manifest = json.loads((work / start.MANIFEST).read_text())["files"]
    assert set(manifest) == {"exercises/01_heads.ipynb", "notebooks/00_primer.ipynb",
                             "notebooks/01_heads.ipynb", "solutions/01_heads.ipynb"}


def test_rerun_never_overwrites_an_edited_notebook(course, tmp_path, capsys):
    work = tmp_path / "work"
    assert run_start(work) == 0
    mine = work / "exercises/01_heads.ipynb"
    mine.write_text(notebook("my answers"))
    (work / "notebooks/00_primer.ipynb").unlink()          # deleted: copied again
    for argv in ([work], [work, "--update"]):            # the course has not changed: nothing to do
        capsys.readouterr()
        assert run_start(*argv) == 0
        assert "my answers" in mine.read_text()
        assert not list(work.rglob("*.new.ipynb"))
    assert (work / "notebooks/00_primer.ipynb").is_file()


def test_update_replaces_untouched_notebooks_and_writes_new_copies_beside_edited_ones(course, tmp_path, capsys):
    work = tmp_path / "work"
    assert run_start(work) == 0
    mine = work / "exercises/01_heads.ipynb"
    mine.write_text(notebook("my answers"))
    for relative in ("exercises/01_heads.ipynb", "notebooks/01_heads.ipynb"):
        (course / relative).write_text(notebook(relative + " v2"))
    (course / "notebooks/02_masks.ipynb").write_text(notebook("masks v1"))
    capsys.readouterr()

    assert run_start(work) == 0                           # without --update: new lessons only, and a note
    out = capsys.readouterr().out
    assert (work / "notebooks/02_masks.ipynb").is_file()
    assert "heads v1" in (work / "notebooks/01_heads.ipynb").read_text()
    assert "newer version" in out and "notebooks/01_heads.ipynb" in out and "--update" in out
    assert "my answers" in mine.read_text() and not list(work.rglob("*.new.ipynb"))

    assert run_start(work, "--update") == 0
    out = capsys.readouterr().out
    assert "notebooks/01_heads.ipynb v2" in (work / "notebooks/01_heads.ipynb").read_text()
    assert "updated  notebooks/01_heads.ipynb" in out
    assert "my answers" in mine.read_text()
    new = work / "exercises/01_heads.new.ipynb"
    assert "exercises/01_heads.ipynb v2" in new.read_text()
    assert "kept your edits to exercises/01_heads.ipynb; the new version is in exercises/01_heads.new.ipynb" in out
    assert sorted(p.name for p in work.rglob("*.new.ipynb")) == ["01_heads.new.ipynb"]

    mine.write_text(notebook("my answers, more"))          # still edited: never overwritten
    assert run_start(work, "--update") == 0
    assert "my answers, more" in mine.read_text()


def test_a_file_the_learner_made_is_never_overwritten(course, tmp_path):
    work = tmp_path / "work"
    (work / "notebooks").mkdir(parents=True)
    (work / "notebooks/01_heads.ipynb").write_text("mine")  # there before start: not in the manifest
    assert run_start(work, "--update") == 0
    assert (work / "notebooks/01_heads.ipynb").read_text() == "mine"
    assert "heads v1" in (work / "notebooks/01_heads.new.ipynb").read_text()


def test_a_broken_manifest_is_reported_not_overwritten(course, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / start.MANIFEST).write_text("{not json")
    assert run_start(work) == 2
    assert "not a manifest" in capsys.readouterr().err
    assert (work / start.MANIFEST).read_text() == "{not json"


def test_the_kernel_is_registered_with_the_fast_blas_launcher(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "env"))
    spec_dir = start.register_kernel("env")
    assert spec_dir == tmp_path / "env/share/jupyter/kernels/mhacourse"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "mhacourse (MLX)" and spec["language"] == "python"
    assert spec["argv"][-4:] == ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if sys.platform.startswith("linux"):
        assert spec["argv"][1:4] == [str(Path(start.__file__).with_name("blas.py")), "exec", "--"]
    assert start.register_kernel("env") == spec_dir        # again: the same spec, rewritten


def test_course_dir_finds_the_checkout_and_refuses_unknown_kinds():
    root = Path(__file__).resolve().parents[1]
    for kind in course_files.KINDS:
        assert course_files.course_dir(kind) == root / kind
    with pytest.raises(ValueError, match="kind must be one of"):
        course_files.course_dir("tests")


def test_course_dir_says_where_it_looked_when_nothing_is_there(tmp_path, monkeypatch):
    monkeypatch.setattr(course_files, "checkout_root", lambda: None)
    monkeypatch.setattr(course_files, "bundle_root", lambda: tmp_path / "_course")
    with pytest.raises(FileNotFoundError, match=r"exercises/ folder is missing: looked in .*_course/exercises"):
        course_files.course_dir("exercises")
    (tmp_path / "_course" / "exercises").mkdir(parents=True)
    assert course_files.course_dir("exercises") == tmp_path / "_course" / "exercises"


# --- the course's kernel in the notebooks' metadata: `strip` sets it, `build-exercises` follows the source ---

def executed(kernelspec):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", execution_count=2)])
    nb.metadata["kernelspec"] = kernelspec
    nb.metadata["mhacourse"] = {"lesson": "02", "exercises": ["split_heads"]}
    return nb


def test_strip_names_the_course_kernel_and_build_exercises_keeps_it(tmp_path):
    from mhacourse import notebooks

    python3 = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    source = executed(python3)
    source.cells[0].source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    (tmp_path / "exercise_sources").mkdir()
    (tmp_path / "notebooks").mkdir()
    nbformat.write(source, tmp_path / "exercise_sources/02_x.ipynb")
    nbformat.write(executed(python3), tmp_path / "notebooks/02_x.ipynb")

    assert notebooks.main(["strip", str(tmp_path / "notebooks"), str(tmp_path / "exercise_sources")]) == 0
    for path in (tmp_path / "notebooks/02_x.ipynb", tmp_path / "exercise_sources/02_x.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"] == notebooks.COURSE_KERNELSPEC
        assert nb.metadata["mhacourse"]["lesson"] == "02" and notebooks.problems(nb) == []
        assert notebooks.strip_file(path) is False          # a second strip changes nothing

    assert cli.main(["build-exercises", "--root", str(tmp_path)]) == 0
    for folder in ("exercises", "solutions"):
        nb = nbformat.read(tmp_path / folder / "02_x.ipynb", as_version=4)
        assert nb.metadata["kernelspec"] == notebooks.COURSE_KERNELSPEC
    assert cli.main(["build-exercises", "--check", "--root", str(tmp_path)]) == 0
    # drift is still caught: a source edited after the build
    source = nbformat.read(tmp_path / "exercise_sources/02_x.ipynb", as_version=4)
    source.cells[0].source = source.cells[0].source.replace("return 1", "return 2")
    nbformat.write(source, tmp_path / "exercise_sources/02_x.ipynb")
    assert cli.main(["build-exercises", "--check", "--root", str(tmp_path)]) == 1


def test_notebooks_without_paths_walks_the_checkout_not_the_current_folder(tmp_path, monkeypatch):
    from mhacourse import notebooks

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    nbformat.write(executed({"name": "python3"}), tmp_path / "notebooks/stray.ipynb")
    paths = notebooks.notebook_paths()
    assert paths and all(Path(__file__).resolve().parents[1] in p.resolve().parents for p in paths)
    monkeypatch.setattr(course_files, "checkout_root", lambda: None)
    with pytest.raises(FileNotFoundError, match="no checkout"):
        notebooks.notebook_paths()
