"""The sandbox's side of grading: run the notebook's cells, call each answer, write the outputs.

Started by :mod:`mhacourse.grading.sandbox` as ``python -m
mhacourse.grading.harness FOLDER`` inside the sandbox. ``FOLDER`` (the only
writable place) holds ``job.pkl`` from the grader: the cells to run, the ones
to skip, and per exercise the answer's name and the calls' inputs. Nothing
here is trusted by the grader: it writes each answer's outputs as plain data
(:mod:`.codec`) and reports progress as JSON lines on the file descriptor it
was given; the grader computes the references, compares and scores.

Before any of the notebook's code runs, the harness replaces the functions
the policy forbids (named ones such as ``mx.softmax``, and the course's
implementations of this lesson) by stand-ins that note calls made from the
learner's code, so that an answer holding a reference to one is still seen.
"""

import json
import os
import pickle
import signal
import sys
import time
import types


class CellTimeout(KeyboardInterrupt):
    """The cell ran past the time limit (raised by the alarm)."""


def main(folder):
    started = time.perf_counter()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(os.path.join(folder, "output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)

    def send(**message):
        try:
            channel.write(json.dumps(message) + "\n")
            channel.flush()
        except Exception:  # noqa: BLE001 - the learner closed it: the grader sees the silence
            pass

    with open(os.path.join(folder, "job.pkl"), "rb") as file:
        job = pickle.load(file)  # written by the grader

    import mlx.core as mx  # noqa: F401 - imported before the learner can touch sys.modules

    from mhacourse.grading import codec, get_exercise, policy
    from mhacourse.grading.registry import compute_call, safe_text, validation_problem

    exercises = [get_exercise(item["id"]) for item in job["exercises"]]
    active = [None]
    _install_stubs(exercises, active)

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.autocall = 0
    shell = InteractiveShell.instance(config=config)
    send(event="ready", seconds=time.perf_counter() - started)

    def alarm(signum, frame):
        raise CellTimeout()

    signal.signal(signal.SIGALRM, alarm)
    for index, source in job["cells"]:
        if index in job["skip_cells"]:
            continue
        send(event="start", kind="cell", where=index)
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
        try:
            result = shell.run_cell(source, store_history=False, silent=False)
        except BaseException as error:  # noqa: BLE001
            result = None
            failure = error
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if result is not None:
            failure = result.error_before_exec or result.error_in_exec
        if isinstance(failure, CellTimeout):
            send(event="end", kind="cell", where=index, status="timeout",
                 error=f"interrupted after {job['timeout']:g} s")
        elif failure is not None:
            send(event="end", kind="cell", where=index, status="error",
                 error=safe_text(f"{type(failure).__name__}: {safe_text(failure)}", 500))
        else:
            send(event="end", kind="cell", where=index, status="ok", error=None)
    send(event="cells-done")
    signal.signal(signal.SIGALRM, signal.SIG_IGN)

    namespace = shell.user_ns
    for number, (item, exercise) in enumerate(zip(job["exercises"], exercises)):
        if exercise.id in job["skip_exercises"]:
            continue
        send(event="start", kind="exercise", where=exercise.id)
        out = os.path.join(folder, f"ex{number}")
        os.makedirs(out, exist_ok=True)
        record = {"exercise_id": exercise.id, "defined": False, "problem": None, "outcomes": [],
                  "inspection": {}, "recorded": [], "tampered": []}
        try:
            answer = namespace.get(item["answer_name"], _MISSING)
            if answer is not _MISSING:
                before = _fingerprint()  # rebinding course code while the answer runs is tampering
                record["defined"] = True
                record["problem"] = validation_problem(exercise, answer)
                record["inspection"] = policy.inspect_answer(answer, policy.known_objects(exercise))
                if record["problem"] is None:
                    recorder = policy.Recorder(exercise)
                    active[0] = exercise.id
                    with recorder:
                        for position, (inputs, extra) in enumerate(item["calls"]):
                            outcome = compute_call(exercise, answer, _loader(inputs),
                                                   item["time_limit"], _loader(extra))
                            record["outcomes"].append(_plain(outcome, out, f"c{position}", codec))
                            if outcome.error and outcome.error["kind"] == "timeout":
                                break
                    active[0] = None
                    record["recorded"] = sorted(set(recorder.calls) | {
                        what for who, what in policy.CALL_LOG if who == exercise.id})
                after = _fingerprint()
                record["tampered"] = ["rebound " + name for name in sorted(before) if after.get(name) != before[name]][:5]
        except BaseException as error:  # noqa: BLE001 - the harness must report, whatever happened
            record["harness_error"] = safe_text(f"{type(error).__name__}: {safe_text(error)}", 300)
        finally:
            active[0] = None
        try:
            text = codec.dumps(record)
        except Exception as error:  # noqa: BLE001
            text = json.dumps({"exercise_id": exercise.id, "harness_error": f"unwritable: {type(error).__name__}"})
        with open(os.path.join(out, "record.json"), "w", encoding="utf-8") as file:
            file.write(text)
        send(event="end", kind="exercise", where=exercise.id)
    send(event="done")
    channel.close()
    os._exit(0)  # skip the learner's atexit handlers and lingering threads


_MISSING = object()


def _loader(data):
    return lambda *_: pickle.loads(data)


def _plain(outcome, folder, prefix, codec):
    """An :class:`~mhacourse.grading.registry.Outcome` as JSON-ready data."""
    from mhacourse.grading.registry import safe_text

    plain = {"error": outcome.error, "seconds": round(float(outcome.seconds), 4)}
    if outcome.error is None:
        try:
            plain["value"] = codec.encode(outcome.value, folder, prefix)
        except BaseException as error:  # noqa: BLE001 - an output that cannot be written
            plain["value"] = {"t": "opaque", "type": safe_text(type(error).__name__, 80)}
    return plain


def _fingerprint():
    """Identity of every function, class and method in the loaded ``mhacourse`` modules."""
    prints = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "mhacourse" or module_name.startswith("mhacourse.")):
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, type) and str(getattr(value, "__module__", "")).startswith("mhacourse"):
                for member, member_value in list(vars(value).items()):
                    if callable(member_value) or hasattr(member_value, "__get__"):
                        prints[f"{module_name}.{name}.{member}"] = id(member_value)
            if callable(value) and not isinstance(value, type):
                prints[f"{module_name}.{name}"] = id(value)
    return prints


def _install_stubs(exercises, active):
    """Replace forbidden functions by recording stand-ins, before any learner code runs.

    Named functions (``Exercise.forbidden``) are replaced in their module; the
    course's implementations of the lesson in every ``mhacourse`` module that
    holds them and in the registry; a course class gets a recording
    ``__init__``. Stubs note ``(exercise id, dotted name)`` in
    ``policy.CALL_LOG`` when called from the learner's code while an answer runs.
    """
    from mhacourse.grading import policy

    def who():
        return active[0]

    replaced = {}
    for exercise in exercises:
        for pattern in exercise.forbidden or ():
            for module, attribute, original, dotted in policy._expand(pattern).values():
                if id(original) not in replaced:
                    stub = policy._recording(original, dotted, policy.CALL_LOG, who)
                    replaced[id(original)] = stub
                    setattr(module, attribute, stub)
        for obj, _ in policy._implementations(exercise).values():
            name = policy._qualname(obj)
            if isinstance(obj, type):
                init = vars(obj).get("__init__")
                if isinstance(init, types.FunctionType) and id(init) not in replaced:
                    stub = policy._recording(init, name, policy.CALL_LOG, who)
                    replaced[id(init)] = stub
                    obj.__init__ = stub
            elif isinstance(obj, types.FunctionType) and id(obj) not in replaced:
                replaced[id(obj)] = policy._recording(obj, name, policy.CALL_LOG, who)
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("mhacourse"):
            continue
        for attribute, value in list(vars(module).items()):
            if not isinstance(value, type) and id(value) in replaced and module_name != "mhacourse.grading.policy":
                setattr(module, attribute, replaced[id(value)])
    from mhacourse.grading.registry import _REGISTRY

    for exercise in _REGISTRY.values():
        if id(exercise.reference) in replaced:
            exercise.reference = replaced[id(exercise.reference)]


if __name__ == "__main__":
    main(sys.argv[1])
