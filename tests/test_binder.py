"""The repo2docker files (binder/) build a working image: replayed here without Docker.

What repo2docker does with them, in order, each replayed on this machine:

1. ``binder/apt.txt``: ``apt-get install`` of each package — here, each must be installed
   (``dpkg -s``; the test fails under CI, and is skipped elsewhere, when one is missing);
2. ``binder/requirements.txt``: ``pip install -r binder/requirements.txt`` in the repository's
   folder — here, in a clean copy of the checkout, into a fresh venv, offline (``--no-index
   --no-deps --no-build-isolation``; the dependencies are the project venv's, hard-linked);
3. ``binder/postBuild``, then ``binder/start`` around the server's command, with that venv first on
   ``PATH`` and a fresh home folder;

then one lesson from the folder ``postBuild`` set up runs under nbclient on the kernel it
registered, on the optimised BLAS (asserted when the machine has one).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mhacourse import blas
from tests.test_wheel import EXECUTE, REPO, _run, child_env, clean_copy, make_venv

BINDER = REPO / "binder"
LESSON = "notebooks/00_mlx_primer.ipynb"


def apt_packages():
    lines = (BINDER / "apt.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_the_binder_files_are_there_and_executable():
    for name in ("apt.txt", "requirements.txt", "runtime.txt", "postBuild", "start"):
        assert (BINDER / name).is_file(), name
    for name in ("postBuild", "start"):
        assert os.access(BINDER / name, os.X_OK), f"binder/{name} must be executable"
        assert (BINDER / name).read_text().startswith("#!/bin/bash\n")
    assert 'exec "$@"' in (BINDER / "start").read_text()
    assert {"libopenblas0-pthread", "bubblewrap"} <= set(apt_packages())
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-3.") and (3, 10) <= tuple(map(int, runtime[len("python-"):].split("."))) < (3, 14)


def test_the_apt_packages_are_installed():
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg: not a Debian or Ubuntu machine")
    missing = [name for name in apt_packages()
               if "install ok installed" not in subprocess.run(["dpkg", "-s", name], capture_output=True,
                                                               text=True).stdout]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"binder/apt.txt packages not installed here: {missing} "
                    f"(`sudo apt-get install {' '.join(missing)}`)")
    assert not missing, f"binder/apt.txt packages not installed: {missing}"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """binder/requirements.txt, postBuild and start replayed in a fresh venv and home folder."""
    base = tmp_path_factory.mktemp("binder")
    repo = clean_copy(base / "repo")                      # REPO_DIR: repo2docker's copy of the repository
    home = base / "home"
    home.mkdir()
    venv = base / "venv"
    python = make_venv(venv)
    env = child_env(home, venv)
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
          "--no-compile", "-r", "binder/requirements.txt"], cwd=repo, env=env)
    built = _run(["bash", repo / "binder" / "postBuild"], cwd=repo, env=env)
    started = _run([repo / "binder" / "start", python, "-c", "print('server starts')"], cwd=home, env=env)
    return {"repo": repo, "home": home, "venv": venv, "python": python, "env": env,
            "postBuild": built.stdout, "start": started.stdout}


def test_requirements_install_the_course_from_the_checkout_as_a_wheel(image):
    code = "import mhacourse, json; from mhacourse.course_files import course_dir; " \
           "print(json.dumps([mhacourse.__file__, str(course_dir('notebooks'))]))"
    package, notebooks = json.loads(_run([image["python"], "-c", code], cwd=image["home"], env=image["env"]).stdout)
    assert Path(package).is_relative_to(image["venv"])
    assert Path(notebooks) == Path(package).parent / "_course" / "notebooks"


def test_post_build_registers_the_kernel_and_starts_the_course(image):
    spec = json.loads((image["venv"] / "share/jupyter/kernels/mhacourse/kernel.json").read_text())
    assert spec["display_name"] == "mhacourse (MLX)" and Path(spec["argv"][0]).parent == image["venv"] / "bin"
    course = image["home"] / "mhacourse-course"
    for kind in ("notebooks", "exercises"):
        assert sorted(p.name for p in (course / kind).glob("*.ipynb")) == \
            sorted(p.name for p in (REPO / kind).glob("*.ipynb"))
    assert "The course can run here." in image["postBuild"]         # the doctor's verdict in the build log
    assert image["start"] == "server starts\n"                       # start hands over to the server's command


def test_start_at_every_launch_keeps_the_learners_edits(image):
    mine = image["home"] / "mhacourse-course" / "exercises" / "01_attention_one_head.ipynb"
    original = mine.read_bytes()
    mine.write_bytes(original.replace(b"YOUR CODE HERE", b"MY CODE HERE", 1))
    try:
        _run([image["repo"] / "binder" / "start", "true"], cwd=image["home"], env=image["env"])
        assert b"MY CODE HERE" in mine.read_bytes()
    finally:
        mine.write_bytes(original)


def test_a_lesson_runs_on_the_registered_kernel_with_the_fast_blas(image):
    script = image["home"] / "execute.py"
    script.write_text(EXECUTE)
    done = _run([image["python"], script, "mhacourse", image["home"] / "mhacourse-course" / LESSON],
                cwd=image["home"], env=image["env"], timeout=600)
    [result] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0, result
    assert Path(result["package"]).is_relative_to(image["venv"])
    if blas.find_optimised_blas({}):
        assert result["blas"]["optimised"] and result["blas"]["preloaded"], result
    elif sys.platform.startswith("linux"):
        assert result["blas"]["name"] == "reference", result
