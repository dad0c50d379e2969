"""``make demo`` / ``mhacourse lab``: the demo notebook opens in its own, emptied JupyterLab workspace."""

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from mhacourse import lab

ROOT = Path(__file__).resolve().parents[1]
DEMO = "notebooks/demo_attention_explorer.ipynb"


def parse(*argv):
    parser = argparse.ArgumentParser()
    lab.configure(parser)
    return parser.parse_args(list(argv))


def test_make_demo_opens_the_demo_notebook_in_the_demo_workspace():
    dry = subprocess.run(["make", "-n", "--always-make", "demo"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = next(line for line in dry.splitlines() if " lab " in line)
    assert f"--open {DEMO}" in line and "--workspace demo" in line, line
    argv = line.split(" lab ", 1)[1].split()
    args = parse(*argv)
    url = f"/lab/workspaces/demo/tree/{DEMO}"
    assert lab.start_url(args) == url
    assert f"--LabApp.default_url={url}" in lab.command(args)
    assert (ROOT / DEMO).is_file()
    # Without a workspace (make lab), the default workspace and a plain tree URL.
    plain = parse("--open", "notebooks")
    assert lab.start_url(plain) == "/lab/tree/notebooks" and lab.reset_command(plain, "x") is None


@pytest.mark.slow  # starts JupyterLab's workspace command twice (~8 s)
def test_the_workspace_is_emptied_whatever_was_open_before(tmp_path):
    """A demo workspace left with another notebook open comes back empty (what ``run`` does first)."""
    spaces = tmp_path / "workspaces"
    spaces.mkdir()
    env = {**os.environ, "JUPYTERLAB_WORKSPACES_DIR": str(spaces), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"data": {"docmanager:exercises/02_many_heads.ipynb": {"data": {
        "path": "exercises/02_many_heads.ipynb", "factory": "Notebook"}}}, "metadata": {"id": "demo"}}))
    args = parse("--open", DEMO, "--workspace", "demo")
    subprocess.run(lab.reset_command(args, old), env=env, check=True, capture_output=True)
    (saved,) = spaces.iterdir()
    assert "02_many_heads" in saved.read_text()

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": {}, "metadata": {"id": "demo"}}))
    subprocess.run(lab.reset_command(args, empty), env=env, check=True, capture_output=True)
    (saved,) = spaces.iterdir()
    exported = json.loads(saved.read_text())
    assert exported["data"] == {} and exported["metadata"]["id"].endswith("demo")
