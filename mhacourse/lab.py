"""``mhacourse lab``: open the course in JupyterLab from an installed package."""

import os
import subprocess
import sys
from pathlib import Path


def configure(parser):
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="port (default: 8888)")
    parser.add_argument("--dir", default=".", help="folder to serve (default: the current one)")
    parser.add_argument("--open", default=None, help="notebook to open first, relative to --dir")


def command(args):
    """The JupyterLab command line that ``run`` executes."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ip={args.ip}", f"--port={args.port}",
           "--no-browser", f"--ServerApp.root_dir={Path(args.dir).resolve()}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    if args.open:
        cmd.append(f"--LabApp.default_url=/lab/tree/{args.open}")
    return cmd


def run(args):
    if not Path(args.dir).is_dir():
        print(f"mhacourse lab: --dir {args.dir!r} is not a folder", file=sys.stderr)
        return 2
    return subprocess.call(command(args))
