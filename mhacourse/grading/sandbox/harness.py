"""The sandbox's side of grading: run the notebook's cells, then call each answer.

Started by the grader (:mod:`mhacourse.grading.batch.isolation`) inside bubblewrap,
on a view of the course that holds no reference: only MLX, NumPy, the course
stages of earlier lessons and this folder. The job comes first on standard
input: the cells to run, the ones to skip, and per exercise the answer's
name, its driver and the number of calls. The calls' inputs are not in it:
after the last cell, the harness asks for each call's inputs, one call at a
time, so no cell can read them and no visible case runs after a hidden input
arrived. Events, records and output files go out as JSON lines, each with
the run's nonce; the working folder is ``$HOME`` (a small tmpfs).

Nothing here is trusted: the harness writes each answer's outputs as plain
data (:mod:`.codec`) and reports progress as JSON lines; the grader computes
the references, compares and scores. What it relies on (its own functions,
the codec, the drivers, ``mx.eval``) is captured before any learner code runs
and checked again at the end; a change is reported as tampering.
"""

import json
import os
import signal
import sys
import threading
import time
import traceback
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
_write, _read, _dup, _dup2, _open, _close = os.write, os.read, os.dup, os.dup2, os.open, os.close
_perf_counter, _setitimer, _signal = time.perf_counter, signal.setitimer, signal.signal
_enumerate_threads, _current_thread = threading.enumerate, threading.current_thread
_encoder = json.JSONEncoder(allow_nan=False, default=str)
_loads = json.loads


class CellTimeout(KeyboardInterrupt):
    """The cell ran past the time limit (raised by the alarm)."""


class CallTimeout(KeyboardInterrupt):
    """A call of the answer ran past its time limit (raised by the alarm)."""


class _Channel:
    """JSON lines out (events), length-prefixed pickles in (each call's inputs)."""

    def __init__(self, out_fd, in_fd):
        self.out_fd, self.in_fd, self.nonce = out_fd, in_fd, None

    def send(self, **message):
        message["nonce"] = self.nonce
        data = (_encoder.encode(message) + "\n").encode()
        try:
            while data:
                data = data[_write(self.out_fd, data):]
        except OSError:  # the grader is gone or a cell closed the descriptor: it sees the silence
            pass

    def receive(self, raw=False):
        import pickle

        header = self._exactly(8)
        payload = self._exactly(int.from_bytes(header, "big"))
        return payload if raw else pickle.loads(payload)

    def _exactly(self, size):
        chunks, left = [], size
        while left:
            chunk = _read(self.in_fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("the grader closed the input channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def main():
    started = _perf_counter()
    folder = os.environ.get("HOME") or os.getcwd()
    # Events go out on a copy of stdout and inputs come in on a copy of stdin; the cells get
    # /dev/null for all three (what they print is not kept: nothing printed reaches a report).
    channel = _Channel(_dup(1), _dup(0))
    null = _open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        _dup2(null, fd)
    _close(null)

    job = _loads(channel.receive(raw=True).decode("utf-8"))  # from the grader, before any learner code
    channel.nonce = job["nonce"]

    import mlx.core as mx
    import numpy  # noqa: F401 - imported before the learner can touch sys.modules

    from . import codec, drivers

    shell = _shell()
    recorder = _Recorder(job["exercises"])
    guard = _Guard([sys.modules[__name__], codec, drivers])
    channel.send(event="ready", seconds=_perf_counter() - started)

    _run_cells(shell, job, channel)
    background = sorted({t.name for t in _enumerate_threads() if t is not _current_thread() and t.is_alive()})
    channel.send(event="cells-done", background=background[:10])
    _signal(signal.SIGALRM, _alarm(CallTimeout))

    namespace = shell.user_ns
    for number, item in enumerate(job["exercises"]):
        if item["id"] in set(job["skip_exercises"]):
            continue
        channel.send(event="start", kind="exercise", where=item["id"])
        out = os.path.join(folder, f"ex{number}")
        os.makedirs(out, exist_ok=True)
        record = {"exercise_id": item["id"], "defined": False, "problem": None, "outcomes": [], "recorded": []}
        try:
            answer = namespace.get(item["answer_name"], _MISSING)
            if answer is not _MISSING:
                record["defined"] = True
                record["problem"] = _validate(drivers, item["kind"], answer)
            if record["problem"] is None and answer is not _MISSING:
                recorder.active = item["id"]
                for position in range(item["calls"]):
                    channel.send(event="need", exercise=number, call=position)
                    inputs, extra = channel.receive()
                    outcome = _call(drivers, mx, item, answer, inputs, extra)
                    record["outcomes"].append(_plain(codec, outcome, out, f"c{position}"))
                    if outcome["error"] and outcome["error"]["kind"] == "timeout":
                        break
                recorder.active = None
                record["recorded"] = sorted(recorder.seen.pop(item["id"], ()))
        except BaseException as error:  # noqa: BLE001 - the harness must report, whatever happened
            record["harness_error"] = safe_text(f"{type_name(error)}: {safe_text(error)}", 300)
        finally:
            recorder.active = None
        try:
            record = _loads(codec.dumps(record))
        except Exception as error:  # noqa: BLE001
            record = {"exercise_id": item["id"], "harness_error": f"unwritable: {type_name(error)}"}
        _send_files(channel, number, out)
        channel.send(event="record", exercise=number, record=record)
        channel.send(event="end", kind="exercise", where=item["id"])
    channel.send(event="done", tampered=guard.changed())
    os._exit(0)  # skip the learner's atexit handlers and lingering threads


_MISSING = object()


def _send_files(channel, number, out):
    import base64

    for name in sorted(os.listdir(out)):
        with open(os.path.join(out, name), "rb") as file:
            data = base64.b64encode(file.read()).decode("ascii")
        channel.send(event="file", exercise=number, name=f"ex{number}/{name}", data=data)


def _shell():
    """An IPython shell that accepts what a Jupyter kernel accepts (``%matplotlib inline`` too)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):  # no event loop here; Agg draws without one
            return None

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.autocall = 0
    return Shell.instance(config=config)


def _alarm(exception):
    def handler(signum, frame):
        raise exception()

    return handler


def _run_cells(shell, job, channel):
    _signal(signal.SIGALRM, _alarm(CellTimeout))
    skip = set(job["skip_cells"])
    for index, source in job["cells"]:
        if index in skip:
            continue
        channel.send(event="start", kind="cell", where=index)
        failure = None
        _setitimer(signal.ITIMER_REAL, job["timeout"])
        try:
            result = shell.run_cell(source, store_history=False, silent=False)
            failure = result.error_before_exec or result.error_in_exec
        except BaseException as error:  # noqa: BLE001
            failure = error
        finally:
            _setitimer(signal.ITIMER_REAL, 0)
        if isinstance(failure, CellTimeout):
            channel.send(event="end", kind="cell", where=index, status="timeout",
                         error=f"interrupted after {job['timeout']:g} s")
        elif failure is not None:
            channel.send(event="end", kind="cell", where=index, status="error",
                         error=safe_text(f"{type_name(failure)}: {safe_text(failure)}", 500))
        else:
            channel.send(event="end", kind="cell", where=index, status="ok", error=None)


def _validate(drivers, kind, answer):
    try:
        drivers.validate(kind, answer)
    except drivers.Problem as problem:
        return {"kind": "problem", "code": problem.code, "data": problem.data}
    return None


def _call(drivers, mx, item, answer, inputs, extra):
    """One call of the answer under the alarm; an outcome as plain data (value kept as an object).

    ``peak`` is the most memory MLX held at once during the call, above what it held at the start.
    """
    start = _perf_counter()
    outcome = {"value": None, "error": None}
    _RESET_PEAK[0]()
    base = _ACTIVE[0]()
    _setitimer(signal.ITIMER_REAL, item["time_limit"])
    try:
        value = drivers.call(item["driver"], answer, inputs, extra)
        _evaluate(mx, value)
        outcome["value"] = value
    except CallTimeout:
        outcome["error"] = {"kind": "timeout"}
    except drivers.Problem as problem:
        outcome["error"] = {"kind": "problem", "code": problem.code, "data": problem.data}
    except BaseException as error:  # noqa: BLE001 - everything is reported, nothing escapes
        kind = "not_implemented" if isinstance(error, NotImplementedError) else "exception"
        outcome["error"] = {"kind": kind, "type": type_name(error), "message": safe_text(error, 500),
                            "line": _learner_line(error)}
    finally:
        _setitimer(signal.ITIMER_REAL, 0)
    outcome["seconds"] = round(_perf_counter() - start, 4)
    outcome["peak"] = max(0, int(_PEAK[0]() - base))
    return outcome


def _evaluate(mx, value, depth=0):
    arrays = []

    def collect(x, depth):
        if depth > 20:
            return
        if isinstance(x, mx.array):
            arrays.append(x)
        elif isinstance(x, (tuple, list)):
            for item in x:
                collect(item, depth + 1)
        elif isinstance(x, dict):
            for item in x.values():
                collect(item, depth + 1)

    collect(value, depth)
    if arrays:
        _EVAL[0](arrays)


_EVAL = [None]  # mx.eval as it was before any learner code (set by _Guard)
_RESET_PEAK, _PEAK, _ACTIVE = [None], [None], [None]  # MLX's memory counters, likewise


def _plain(codec, outcome, folder, prefix):
    plain = {"error": outcome["error"], "seconds": outcome["seconds"], "peak": outcome["peak"]}
    if outcome["error"] is None:
        try:
            plain["value"] = codec.encode(outcome["value"], folder, prefix)
        except BaseException as error:  # noqa: BLE001 - an output that cannot be written
            plain["value"] = {"t": "opaque", "type": safe_text(type_name(error), 80)}
    return plain


def _learner_line(error):
    """The innermost line of the learner's code in ``error``'s traceback (``""`` if none)."""
    try:
        frames = traceback.extract_tb(error.__traceback__)
        mlx_dir = os.path.dirname(os.path.abspath(sys.modules["mlx.core"].__file__))
        learner = [f for f in frames if not os.path.abspath(f.filename).startswith((_HERE, mlx_dir))]
        if not learner:
            return ""
        frame = learner[-1]
        return f"line {frame.lineno}, in {frame.name}" + (f": {frame.line.strip()}" if frame.line else "")
    except BaseException:  # noqa: BLE001
        return ""


def safe_text(value, limit=2000):
    """``str(value)``, or a placeholder when its ``__str__`` fails or raises anything at all."""
    try:
        text = str(value)
        if not isinstance(text, str):
            raise TypeError
    except BaseException:  # noqa: BLE001 - a learner's __str__ may raise SystemExit
        text = f"<a {type_name(value)} that cannot be printed>"
    return text[:limit]


def type_name(value):
    """The value's class name, or ``object`` when even that misbehaves."""
    try:
        name = type(value).__name__
        return name if isinstance(name, str) else "object"
    except BaseException:  # noqa: BLE001
        return "object"


class _Recorder:
    """Notes calls of the functions each exercise forbids while that exercise's answer runs.

    The job names them (``"mlx.core.softmax"``, ``"mlx.core.fast.*"``); each is replaced in
    its module by a stand-in before any learner code runs. Only a second signal: the grader
    judges the policy from the submitted source, and what is recorded here can only lower
    a score.
    """

    def __init__(self, exercises):
        import importlib

        self.active, self.seen = None, {}
        wanted = {}
        for item in exercises:
            for dotted in item.get("record") or ():
                wanted.setdefault(dotted, set()).add(item["id"])
        replaced = {}
        for dotted, owners in wanted.items():
            module_name, _, name = dotted.rpartition(".")
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            names = [n for n in dir(module) if not n.startswith("_")] if name == "*" else [name]
            for attribute in names:
                original = getattr(module, attribute, None)
                if not callable(original) or isinstance(original, (type, types.ModuleType)):
                    if not isinstance(original, type):
                        continue
                key = id(original)
                if key not in replaced:
                    replaced[key] = (original, set())
                replaced[key][1].update(owners)
                setattr(module, attribute, self._stand_in(original, f"{module_name}.{attribute}", replaced[key][1]))

    def _stand_in(self, original, dotted, owners):
        recorder = self
        if isinstance(original, type):  # a class: note when one is built (a subclass too)
            init = original.__init__

            def __init__(self, *args, **kwargs):
                if recorder.active in owners:
                    recorder.seen.setdefault(recorder.active, set()).add(dotted)
                return init(self, *args, **kwargs)

            original.__init__ = __init__
            return original

        def stand_in(*args, **kwargs):
            if recorder.active in owners:
                recorder.seen.setdefault(recorder.active, set()).add(dotted)
            return original(*args, **kwargs)

        stand_in.__name__ = getattr(original, "__name__", "stand_in")
        stand_in.__doc__ = getattr(original, "__doc__", None)
        return stand_in


class _Guard:
    """What the harness relies on, taken before any learner code runs; :meth:`changed` says what moved.

    Every global of the harness, the codec and the drivers (functions by their code, defaults
    and closure; classes by their methods), and ``mx.eval``.
    """

    def __init__(self, modules):
        import mlx.core as mx

        _EVAL[0] = mx.eval
        _RESET_PEAK[0], _PEAK[0], _ACTIVE[0] = mx.reset_peak_memory, mx.get_peak_memory, mx.get_active_memory
        self.mx, self.modules = mx, list(modules)
        self.items = self._now()

    def _now(self):
        prints = {f"mx.{name}": self._print(getattr(self.mx, name, None))
                  for name in ("eval", "reset_peak_memory", "get_peak_memory", "get_active_memory")}
        for module in self.modules:
            for name, value in list(vars(module).items()):
                if not name.startswith("__"):
                    prints[f"{module.__name__}.{name}"] = self._print(value)
        return prints

    @staticmethod
    def _print(value):
        """Identity of ``value`` and, for a function, of its code, defaults and closure."""
        if isinstance(value, types.FunctionType):
            cells = tuple(id(c.cell_contents) if _filled(c) else None for c in (value.__closure__ or ()))
            return (id(value), id(value.__code__), id(value.__defaults__), id(value.__kwdefaults__), cells)
        if isinstance(value, type):
            return (id(value), tuple((k, _Guard._print(v)) for k, v in sorted(vars(value).items())
                                     if isinstance(v, types.FunctionType)))
        return (id(value),)

    def changed(self):
        now = self._now()
        return sorted(key for key in set(self.items) | set(now) if self.items.get(key) != now.get(key))[:10]


def _filled(cell):
    try:
        _ = cell.cell_contents
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    main()
