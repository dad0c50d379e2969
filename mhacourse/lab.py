"""``mhacourse lab``: open the course in JupyterLab from an installed package.

With ``--workspace NAME`` (``make demo`` uses ``demo``) the notebook given by
``--open`` opens in a JupyterLab workspace of its own, emptied before the
server starts, so whatever another session left open (another notebook, which
Run All would then run) never comes back.
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)


def configure(parser):
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="port (default: 8888)")
    parser.add_argument("--dir", default=".", help="folder to serve (default: the current one)")
    parser.add_argument("--open", default=None, help="notebook (or folder) to open first, relative to --dir")
    parser.add_argument("--workspace", default=None,
                        help="open it in this JupyterLab workspace, emptied first (e.g. demo)")


def start_url(args):
    """The path JupyterLab opens at, e.g. ``/lab/workspaces/demo/tree/notebooks/demo.ipynb``.

    Args:
        args: The parsed ``mhacourse lab`` arguments.

    Returns:
        str or None: ``None`` without ``--open`` (JupyterLab's own default).
    """
    if not args.open:
        return None
    path = quote(Path(args.open).as_posix().strip("/"))
    if getattr(args, "workspace", None):
        return f"/lab/workspaces/{quote(args.workspace, safe='')}/tree/{path}"
    return f"/lab/tree/{path}"


def command(args):
    """The JupyterLab command line that ``run`` executes."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ip={args.ip}", f"--port={args.port}",
           "--no-browser", f"--ServerApp.root_dir={Path(args.dir).resolve()}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    url = start_url(args)
    if url:
        cmd.append(f"--LabApp.default_url={url}")
    return cmd


def reset_command(args, empty_file):
    """The command that empties the workspace (``jupyter lab workspaces import``), or ``None``.

    Args:
        args: The parsed ``mhacourse lab`` arguments.
        empty_file (str or Path): Where an empty workspace (JSON) is written.
    """
    if not getattr(args, "workspace", None):
        return None
    return [sys.executable, "-m", "jupyterlab", "workspaces", "import", f"--name={args.workspace}",
            str(empty_file)]


def run(args):
    if importlib.util.find_spec("jupyterlab") is None:
        log.error("lab: JupyterLab is not installed here: pip install 'mhacourse[lab]' (or pip install jupyterlab)")
        return 2
    if not Path(args.dir).is_dir():
        log.error("lab: --dir %r is not a folder", args.dir)
        return 2
    if args.open and not (Path(args.dir) / args.open).exists():
        log.error("lab: --open %r is not in %r", args.open, args.dir)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.jupyterlab-workspace"
        empty.write_text(json.dumps({"data": {}, "metadata": {"id": args.workspace or "empty"}}))
        reset = reset_command(args, empty)
        if reset:
            subprocess.run(reset, check=False, stdout=subprocess.DEVNULL)
    return subprocess.call(command(args))
