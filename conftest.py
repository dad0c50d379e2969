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
