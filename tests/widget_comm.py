"""A stand-in for the kernel's comm, for widget tests and benchmarks without a front-end.

``recording_comms()`` makes every widget created inside it open a
:class:`RecordingComm`, which keeps what the widget would send to the browser.
"""

import contextlib
import json


class RecordingComm:
    """Records the first message (``opened``) and every later one as ``(data, buffers)``."""

    comm_id = "recording"
    kernel = "Truthy"

    def __init__(self, **kwargs):
        self.opened = kwargs
        self.messages = []

    def open(self, *args, **kwargs):
        pass

    def on_msg(self, callback):
        pass

    def close(self, *args, **kwargs):
        pass

    def send(self, data=None, metadata=None, buffers=None):
        self.messages.append((data, list(buffers or [])))

    @staticmethod
    def size(data, buffers):
        """Bytes on the wire, roughly: the JSON and the binary buffers."""
        return len(json.dumps(data)) + sum(memoryview(b).nbytes for b in buffers)


@contextlib.contextmanager
def recording_comms():
    """Yields the list of :class:`RecordingComm` opened by widgets made inside the block."""
    import ipywidgets.comm

    made = []
    original = ipywidgets.comm.create_comm
    ipywidgets.comm.create_comm = lambda **kwargs: made.append(RecordingComm(**kwargs)) or made[-1]
    try:
        yield made
    finally:
        ipywidgets.comm.create_comm = original
