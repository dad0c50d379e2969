"""Run a learner's code with a time limit, without signals (works inside Jupyter).

The code runs in a daemon thread with its own MLX stream; the caller waits
for it at most ``time_limit`` seconds. A thread cannot be killed: an answer
that runs past the limit is abandoned and finishes in the background.
"""

import os
import threading
import time
import traceback
from dataclasses import dataclass

import mlx.core as mx

__all__ = ["Run", "AnswerProblem", "run_with_time_limit", "evaluate", "learner_line"]

_GRADING_DIR = os.path.dirname(os.path.abspath(__file__))
_MLX_DIR = os.path.dirname(os.path.abspath(mx.__file__))
_NO_STREAM = "no Stream"


class AnswerProblem(Exception):
    """Raised by a check (not the learner) when an answer is unusable.

    Attributes:
        message (str): What is wrong.
        hint_id (str or None): The recognised mistake.
        hint (str or None): What to fix.
    """

    def __init__(self, message, hint_id=None, hint=None):
        super().__init__(message)
        self.message = message
        self.hint_id = hint_id
        self.hint = hint


@dataclass
class Run:
    """What happened when the answer ran.

    Attributes:
        value: The returned value (evaluated), when it returned.
        error (BaseException or None): The exception it raised.
        timed_out (bool): It was still running at the time limit.
        seconds (float): Time taken (or waited).
    """

    value: object = None
    error: BaseException = None
    timed_out: bool = False
    seconds: float = 0.0


def evaluate(value):
    """``mx.eval`` every array inside ``value`` (arrays, tuples, lists, dicts)."""
    arrays = []

    def collect(x):
        if isinstance(x, mx.array):
            arrays.append(x)
        elif isinstance(x, (tuple, list)):
            for item in x:
                collect(item)
        elif isinstance(x, dict):
            for item in x.values():
                collect(item)

    collect(value)
    if arrays:
        mx.eval(arrays)
    return value


def _run_here(fn, run):
    start = time.perf_counter()
    try:
        run.value = evaluate(fn())
    except BaseException as error:  # noqa: BLE001 - everything is reported, nothing escapes
        run.error = error
    run.seconds = time.perf_counter() - start


def run_with_time_limit(fn, time_limit):
    """Call ``fn()`` and evaluate its result, waiting at most ``time_limit`` seconds.

    Args:
        fn (callable): Takes no arguments.
        time_limit (float or None): Seconds; ``None`` runs in the calling thread.

    Returns:
        Run: The value or the exception, and the time taken.
    """
    run = Run()
    if time_limit is None:
        _run_here(fn, run)
        return run

    def target():
        # MLX streams belong to a thread: give this one its own.
        with mx.stream(mx.new_stream(mx.default_device())):
            _run_here(fn, run)

    start = time.perf_counter()
    worker = threading.Thread(target=target, name="mhacourse-check", daemon=True)
    worker.start()
    worker.join(time_limit)
    if worker.is_alive():
        return Run(timed_out=True, seconds=time.perf_counter() - start)
    if isinstance(run.error, RuntimeError) and _NO_STREAM in str(run.error):
        # The answer uses a lazy array built in the notebook's thread; such a
        # graph can only be evaluated there, so run it there, still within the limit.
        run = _run_here_within(fn, time_limit)
    return run


class _TimeLimit(BaseException):
    """Raised by the alarm in :func:`_run_here_within`."""


def _run_here_within(fn, time_limit):
    """Run ``fn`` in this thread; past ``time_limit`` it times out (interrupted by an alarm on the
    main thread, elsewhere judged by its time once it returns)."""
    import signal

    run = Run()
    on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not on_main:
        _run_here(fn, run)
        return Run(timed_out=True, seconds=run.seconds) if run.seconds > time_limit else run

    def alarm(signum, frame):
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        _run_here(fn, run)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(run.error, _TimeLimit) or run.seconds > time_limit:
        return Run(timed_out=True, seconds=run.seconds)
    return run


def learner_line(error):
    """The line of the learner's code where ``error`` was raised.

    Frames inside the grading package, MLX and the standard library's threading
    are skipped; falls back to the innermost frame.

    Returns:
        str: e.g. ``'line 4, in split_heads: x = x.reshape(B, H, L, D)'``, or ``""``.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""

    def is_learner(frame):
        path = os.path.abspath(frame.filename)
        return not (path.startswith(_GRADING_DIR) or path.startswith(_MLX_DIR)
                    or path.endswith(os.path.join("threading.py")))

    learner = [f for f in frames if is_learner(f)]
    frame = (learner or frames)[-1]
    text = f"line {frame.lineno}, in {frame.name}"
    if frame.line:
        text += f": {frame.line.strip()}"
    return text
