"""The package's metadata: one version, the MIT licence file, classifiers, type hints shipped, extras."""

import importlib.metadata
from pathlib import Path

import pytest

import mhacourse

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once():
    assert "version" not in PROJECT["project"] and "version" in PROJECT["project"]["dynamic"]
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mhacourse.__version__"}
    assert importlib.metadata.version("mhacourse") == mhacourse.__version__


def test_the_licence_file_and_classifiers():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Copyright (c) 2026 the mhacourse authors" in licence
    assert PROJECT["project"]["license"] == "MIT" and PROJECT["project"]["license-files"] == ["LICENSE"]
    metadata = importlib.metadata.metadata("mhacourse")
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert "Topic :: Education" in metadata.get_all("Classifier")


def test_the_type_hints_are_shipped():
    assert (ROOT / "mhacourse" / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["mhacourse"]


def test_jupyterlab_and_the_grading_progress_bar_are_extras():
    core = " ".join(PROJECT["project"]["dependencies"])
    extras = PROJECT["project"]["optional-dependencies"]
    assert "jupyterlab" not in core and any(dep.startswith("jupyterlab") for dep in extras["lab"])
    assert "tqdm" not in core and any(dep.startswith("tqdm") for dep in extras["grading"])
    makefile = (ROOT / "Makefile").read_text()
    assert '".[dev,site,lab,grading]"' in makefile      # make lab and make test get them all
