"""Settings for every test, notebooks included (nbval collects them from this folder down)."""

import atexit
import itertools
import os
import shutil
import tempfile

import nbval.kernel
from jupyter_client.manager import KernelManager

_SOCKETS = tempfile.mkdtemp(prefix="mhacourse-kernels-")
atexit.register(shutil.rmtree, _SOCKETS, ignore_errors=True)
_COUNTER = itertools.count()


class _UnixSocketKernelManager(KernelManager):
    """Start nbval's kernels on Unix sockets.

    With TCP, each kernel picks free ports that another worker's kernel can
    take before it binds them; the loser dies "before replying to
    kernel_info". Unix sockets in a private folder cannot collide.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", os.path.join(_SOCKETS, f"{os.getpid()}-{next(_COUNTER)}"))
        super().__init__(**kwargs)


nbval.kernel.KernelManager = _UnixSocketKernelManager


# --- markers: which lane a test belongs to (registered in pyproject.toml) ---
# `make check` deselects them all: unit tests without notebooks, browsers, sandboxed grading or
# long builds. `make test` runs everything.
BROWSER_FILES = {"test_browser.py", "test_site.py", "test_feedback_browser.py"}
SLOW_FILES = {"test_wheel.py", "test_binder.py", "test_attacks.py", "test_grade.py", "test_classroom.py",
              "test_term.py"}
# The grading tests that grade through the sandbox, a subprocess per check (mhacourse/grading/).
GRADING_FILES = {"test_attacks.py", "test_grade.py", "test_classroom.py", "test_sandbox.py", "test_term.py"}
# A test elsewhere that drives a browser names one of these (tests/browser_harness.py).
BROWSER_NAMES = {"chromium", "require_browser", "lab_server", "open_and_run"}


def lane_markers(item):
    """The lane markers ``item`` gets from its file's name (and, for browsers, the names it uses)."""
    name = item.path.name
    markers = set()
    if item.path.suffix == ".ipynb":
        markers.add("notebook")
    if name in BROWSER_FILES:
        markers.add("browser")
    code = getattr(getattr(item, "function", None), "__code__", None)
    if code is not None and BROWSER_NAMES & set(code.co_names):
        markers.add("browser")
    if name in SLOW_FILES:
        markers.add("slow")
    if name in GRADING_FILES:
        markers.add("grading")
    return markers


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in sorted(lane_markers(item)):
            item.add_marker(marker)
