"""The course travels as one wheel: built from a clean checkout, installed outside it, it runs and grades.

One sdist is built from a clean copy of the checkout (tracked and untracked-but-not-ignored files,
as a fresh clone has), and one wheel from that sdist; both must carry every lesson, exercise,
exercise source and solution. The wheel goes into a fresh virtual environment outside the checkout
(``pip install --no-deps --no-index``: offline; the dependencies — MLX, Jupyter — are hard links to
the project venv's installed files, without its editable install of the checkout). From there, and
never from the checkout:

- ``mhacourse start`` copies the course into a temporary folder and registers the course kernel;
- one lesson and one solved exercise run there under nbclient on that kernel, and the kernel runs
  MLX on the optimised BLAS (asserted, when the machine has one) from the installed package;
- ``mhacourse grade``, run from a third folder, scores fixture submissions exactly as the checkout's
  grader must (``tests/test_grade.py`` holds it to the same ``expected.json``), and every solution
  with full marks.

The wheel, the venv and the started folder are made once for the module.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from mhacourse import blas
from mhacourse.course_files import KINDS

REPO = Path(__file__).resolve().parents[1]
LESSON = "notebooks/04_custom_dims.ipynb"
SOLVED = "solutions/04_custom_dims.ipynb"
# Fixture submissions the installed grader scores (with every solution): a full, an untouched and a
# partial notebook, missing and duplicated cells (the exercise structure the grader must find without
# a checkout), answers borrowed from the course (the policy), and a cell that raises.
GRADED = ["01_full", "02_untouched", "03_partial", "06_borrowed_answers", "09_deleted_answer",
          "10_duplicated_answer", "16_exception_cell"]
TIMEOUT = 10


def _run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    done = subprocess.run([str(a) for a in argv], **kwargs)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def clean_copy(target):
    """Copy the checkout as a fresh clone has it: tracked files plus untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell a clean copy")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def build(kind, source_dir, out_dir):
    """Build an sdist or a wheel with setuptools' PEP 517 backend, in a child process (no network)."""
    code = f"from setuptools import build_meta as b; print(b.build_{kind}({str(out_dir)!r}))"
    done = _run([sys.executable, "-c", code], cwd=source_dir)
    return out_dir / done.stdout.strip().splitlines()[-1]


def course_notebooks(root):
    return sorted(f"{kind}/{p.name}" for kind in KINDS for p in (root / kind).glob("*.ipynb"))


def child_env(home, venv):
    """An environment that knows nothing of the checkout: no PYTHONPATH, no LD_PRELOAD, own Jupyter folders."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LD_PRELOAD", blas.ENV_VAR, "VIRTUAL_ENV", blas.REEXEC_MARKER)
           and not k.startswith(("JUPYTER", "IPYTHON", "PYTEST", "COV_"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               JUPYTER_DATA_DIR=str(home / "jupyter-data"), JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONNOUSERSITE="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:                                         # another file system: copy
        shutil.copy2(source, target)


def _not_the_checkouts(folder, names):
    """Leave out the editable install of the checkout (its finder, .pth and metadata) and any byte code."""
    return [name for name in names if name == "mhacourse" or name.startswith(("mhacourse-", "__editable__"))]


def make_venv(folder, wheel=None):
    """A fresh venv outside the checkout: the dependencies as this project's venv has them, then the wheel.

    The dependencies (MLX, NumPy, Jupyter, ...) are hard links to this project's venv's files (copies on
    another file system), so no network and no pip resolution are needed; the checkout's editable
    install is left out. The wheel (if given) is installed by pip, offline.
    """
    _run([sys.executable, "-m", "venv", "--without-pip", folder])
    python = folder / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    shutil.copytree(sysconfig.get_paths()["purelib"], purelib, symlinks=True, dirs_exist_ok=True,
                    copy_function=_link_or_copy, ignore=_not_the_checkouts)
    if wheel is not None:
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
              "--no-compile", wheel])
    return python


# Runs in the installed venv: execute notebooks on a kernel, then ask that kernel what it runs on.
EXECUTE = textwrap.dedent('''
    import json, os, sys, tempfile
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    PROBE = ("import json, sys, mhacourse, mhacourse.blas as b; "
             "print(json.dumps({'blas': b.current_blas().as_dict(), 'python': sys.executable, "
             "'package': mhacourse.__file__}))")
    kernel, results = sys.argv[1], []
    for path in sys.argv[2:]:
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        km = KernelManager(kernel_name=kernel, transport="ipc",
                           ip=os.path.join(tempfile.mkdtemp(prefix="k-"), "kernel"))
        NotebookClient(nb, km=km, timeout=240, resources={"metadata": {"path": os.path.dirname(path)}}).execute()
        probe = json.loads("".join(o.get("text", "") for o in nb.cells[-1].outputs))
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        results.append({"path": path, "cells": len(nb.cells), "errors": len(errors), **probe})
    print(json.dumps(results))
''')


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """An sdist built from a clean copy of the checkout, and a wheel built from that sdist."""
    root = tmp_path_factory.mktemp("dist")
    clean = clean_copy(root / "clean")
    sdist = build("sdist", clean, root)
    with tarfile.open(sdist) as archive:
        archive.extractall(root / "unpacked", filter="data") if hasattr(tarfile, "data_filter") else \
            archive.extractall(root / "unpacked")
    wheel = build("wheel", next((root / "unpacked").iterdir()), root)
    return {"clean": clean, "sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    """The wheel in a fresh venv, and `mhacourse start` run from there into a temporary folder."""
    base = tmp_path_factory.mktemp("installed")
    home = base / "home"
    home.mkdir()
    venv = base / "venv"
    python = make_venv(venv, dist["wheel"])
    env = child_env(home, venv)
    work = base / "course"
    started = _run([venv / "bin" / "mhacourse", "start", work, "--solutions"], cwd=home, env=env)
    return {"venv": venv, "python": python, "env": env, "home": home, "work": work, "start": started.stdout}


def test_the_wheel_and_the_sdist_carry_every_notebook(dist):
    expected = course_notebooks(REPO)
    assert len(expected) >= 30 and {"notebooks", "exercises"} <= {name.split("/")[0] for name in expected}
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        bundled = sorted(n[len("mhacourse/_course/"):] for n in names
                         if n.startswith("mhacourse/_course/") and n.endswith(".ipynb"))
        assert bundled == expected
        for name in expected:                           # copied byte for byte: the committed folders are the source
            assert wheel.read(f"mhacourse/_course/{name}") == (REPO / name).read_bytes(), name
    assert not [n for n in names if n.startswith(("tests/", "setup.py")) or "/.ipynb_checkpoints/" in n]
    with tarfile.open(dist["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert set(expected) <= members and {"setup.py", "MANIFEST.in", "pyproject.toml"} <= members


def test_a_wheel_from_the_clean_checkout_itself_carries_them_too(dist, tmp_path):
    wheel = build("wheel", dist["clean"], tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        bundled = sorted(n[len("mhacourse/_course/"):] for n in archive.namelist()
                         if n.startswith("mhacourse/_course/") and n.endswith(".ipynb"))
    assert bundled == course_notebooks(REPO)


def test_the_installed_package_is_not_the_checkout(installed):
    code = ("import mhacourse, json; from mhacourse.course_files import course_dir, checkout_root; "
            "from mhacourse.grading.authoring import build; "
            "print(json.dumps([mhacourse.__file__, str(course_dir('exercises')), str(checkout_root()), "
            "str(build.project_root())]))")
    package, exercises, checkout, root = json.loads(
        _run([installed["python"], "-c", code], cwd=installed["home"], env=installed["env"]).stdout)
    assert Path(package).is_relative_to(installed["venv"]) and checkout == "None"
    assert Path(exercises) == Path(package).parent / "_course" / "exercises"
    assert Path(root) == Path(package).parent / "_course"
    check = _run([installed["venv"] / "bin" / "mhacourse", "build-exercises", "--check"],
                 cwd=installed["home"], env=installed["env"])
    assert "up to date" in check.stdout


def test_start_copies_the_course_and_registers_the_kernel(installed):
    work = installed["work"]
    for kind in ("notebooks", "exercises", "solutions"):
        assert sorted(p.name for p in (work / kind).glob("*.ipynb")) == \
            sorted(p.name for p in (REPO / kind).glob("*.ipynb")), kind
    assert not (work / "exercise_sources").exists()
    spec = json.loads((installed["venv"] / "share/jupyter/kernels/mhacourse/kernel.json").read_text())
    assert spec["display_name"] == "mhacourse (MLX)"
    assert Path(spec["argv"][0]).parent == installed["venv"] / "bin"
    if sys.platform.startswith("linux"):
        assert Path(spec["argv"][1]).name == "blas.py" and Path(spec["argv"][1]).is_relative_to(installed["venv"])
    again = _run([installed["venv"] / "bin" / "mhacourse", "start", work, "--solutions"],
                 cwd=installed["home"], env=installed["env"])
    assert "0 copied, 0 updated" in again.stdout


def test_a_lesson_and_a_solved_exercise_run_on_the_course_kernel_with_the_fast_blas(installed):
    script = installed["home"] / "execute.py"
    script.write_text(EXECUTE)
    paths = [installed["work"] / LESSON, installed["work"] / SOLVED]
    done = _run([installed["python"], script, "mhacourse", *paths], cwd=installed["home"], env=installed["env"],
                timeout=600)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        assert result["errors"] == 0, result
        assert Path(result["python"]).parent == installed["venv"] / "bin"
        assert Path(result["package"]).is_relative_to(installed["venv"]), result
        if blas.find_optimised_blas({}):
            assert result["blas"]["optimised"] and result["blas"]["preloaded"], result
        elif sys.platform.startswith("linux"):
            assert result["blas"]["name"] == "reference", result


# --- grading with the installed package alone ---

def _make_submissions():
    spec = importlib.util.spec_from_file_location("make_submissions",
                                                  REPO / "tests" / "fixtures" / "make_submissions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graded(installed, tmp_path_factory):
    """The installed ``mhacourse grade``, run from a third folder, on fixtures and every solution."""
    from mhacourse.grading.batch import isolation

    if not isolation.bwrap_available():
        pytest.skip("bubblewrap cannot run here")
    base = tmp_path_factory.mktemp("graded")
    submissions = base / "submissions"
    expected = _make_submissions().make_submissions(submissions)
    chosen = sorted(name for name in expected if Path(name).stem.split("__")[-1] in GRADED)
    assert len(chosen) == len(GRADED)
    for name in set(expected) - set(chosen):
        (submissions / name).unlink()
    (submissions / "expected.json").unlink(missing_ok=True)
    shutil.copytree(installed["work"] / "solutions", submissions / "solutions")   # as `mhacourse start` copied them

    third = base / "grading-here"                          # neither the checkout nor the started folder
    third.mkdir()
    _run([installed["venv"] / "bin" / "mhacourse", "grade", submissions, "--jobs", "2", "--timeout", TIMEOUT,
          "--out", "grades.csv", "--json", "reports", "--no-progress"], cwd=third, env=installed["env"],
         timeout=600)
    reports = {}
    for path in (third / "reports").glob("*.json"):
        if path.name != "class-summary.json":
            report = json.loads(path.read_text())
            reports[Path(report["file"]).relative_to(submissions).as_posix()] = report
    solutions = sorted(f"solutions/{p.name}" for p in (REPO / "solutions").glob("*.ipynb"))
    assert sorted(reports) == sorted(chosen + solutions)
    return {"reports": reports, "expected": {name: expected[name] for name in chosen}, "solutions": solutions}


def test_the_installed_grader_scores_the_fixtures_as_the_checkout_does_from_any_folder(graded):
    """Status, every exercise's points and the total that ``tests/test_grade.py`` holds the checkout's grader to."""
    from mhacourse.grading import get_exercise

    wrong = {}
    for name, want in graded["expected"].items():
        report = graded["reports"][name]
        points = {row["id"]: row["points"] for row in report["exercises"]}
        want_points = {row["id"]: row["max_points"] if row["id"] in want["solved"] else 0.0
                       for row in report["exercises"]}
        total = sum(get_exercise(ex_id).points for ex_id in want["solved"])
        if (report["status"], points, report["total"]) != (want["status"], want_points, total) or not points:
            wrong[name] = (report["status"], points, report["detail"])
    assert not wrong, json.dumps(wrong, indent=1)


def test_the_installed_grader_gives_every_solution_full_marks_from_any_folder(graded):
    wrong = {}
    for name in graded["solutions"]:
        report = graded["reports"][name]
        if report["status"] != "ok" or not report["exercises"] or report["total"] != report["max"]:
            wrong[name] = (report["status"], report["total"], report["max"], report["detail"])
    assert not wrong, json.dumps(wrong, indent=1)
