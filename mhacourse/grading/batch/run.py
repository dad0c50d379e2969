"""Running one submission in its sandbox, rerunning past each cell or answer that killed or hung it,
and reading the records back as outcomes.
"""

import tempfile
from pathlib import Path

STARTUP_TIMEOUT = 120  # seconds for the sandbox's Python to import MLX and the course


GRACE = 5  # seconds past a deadline before a hung sandbox is killed


def _run_sandboxed(code_cells, items, *, timeout, sandboxed, view, skip_cells, skip_exercises):
    """One run of the harness in a fresh sandbox; the records come back decoded."""
    from mhacourse.grading.batch import isolation

    job = {"cells": code_cells, "skip_cells": sorted(skip_cells), "skip_exercises": sorted(skip_exercises),
           "timeout": float(timeout),
           "exercises": [{k: v for k, v in item.items() if not k.startswith("_")} for item in items]}
    active = [item for item in items if item["id"] not in skip_exercises]
    cells = [index for index, _ in code_cells if index not in skip_cells]
    per_exercise = max([item["calls"] * item["time_limit"] for item in active] or [0]) + 30
    deadlines = {"start": STARTUP_TIMEOUT, "cell": timeout + GRACE, None: 30 + GRACE, "exercise": per_exercise}
    # Absolute: nothing the sandbox sends can move it.
    deadlines["total"] = (STARTUP_TIMEOUT + len(cells) * (timeout + GRACE)
                          + sum(item["calls"] * item["time_limit"] + 30 for item in active) + 30)

    def feed(number, call):
        return items[number]["_inputs"][call]

    with tempfile.TemporaryDirectory(prefix="mhacourse-grade-") as folder:
        run = isolation.run_harness(job, view=view, feed=feed, folder=folder, sandboxed=sandboxed,
                                    deadlines=deadlines)
        records = {}
        for number, item in enumerate(items):
            if number in run.records:
                records[item["id"]] = _read_record(run.records[number], Path(folder) / f"ex{number}", item)
    return run, records


def _read_record(record, folder, item):
    """The harness's record for one exercise, values decoded; problems turned into messages here."""
    from mhacourse.grading import get_exercise
    from mhacourse.grading.exercise import Outcome, error_descriptor
    from mhacourse.grading.sandbox import codec

    if not isinstance(record, dict) or record.get("exercise_id") != item["id"]:
        return {"harness_error": "the record is malformed"}
    exercise = get_exercise(item["id"])
    outcomes = []
    for position, plain in enumerate((record.get("outcomes") or [])[:item["calls"]]):
        if not isinstance(plain, dict):
            outcomes.append(Outcome(error=error_descriptor("missing")))
            continue
        error = plain.get("error")
        if error is not None:
            outcomes.append(Outcome(error=_clean_error(error, exercise, item["_calls"][position])))
            continue
        peak = plain.get("peak")
        try:
            outcomes.append(Outcome(value=codec.decode(plain.get("value"), folder),
                                    peak=int(peak) if isinstance(peak, int) and not isinstance(peak, bool) else None))
        except Exception:  # noqa: BLE001 - malformed data from the sandbox: an error, never a pass
            outcomes.append(Outcome(error=error_descriptor("exception", "OutputError",
                                                           "the output could not be read back")))
    problem = record.get("problem")
    return {
        "defined": record.get("defined") is True,
        "problem": _clean_error(problem, exercise, None) if problem is not None else None,
        "outcomes": outcomes,
        "recorded": [str(x)[:200] for x in (record.get("recorded") or [])][:50],
        "harness_error": str(record["harness_error"])[:300] if record.get("harness_error") else None,
    }


_KINDS = ("exception", "problem", "not_implemented", "timeout", "killed", "missing")


def _clean_error(error, exercise, call):
    """An error descriptor from the sandbox, reduced to short strings of known fields; a driver's
    problem becomes the exercise's message and hint (written here, never by the sandbox)."""
    from mhacourse.grading.exercise import _descriptor, error_descriptor
    from mhacourse.grading.sandbox.drivers import Problem

    if not isinstance(error, dict) or error.get("kind") not in _KINDS:
        return error_descriptor("exception", "Error", "malformed error report")
    if error["kind"] == "problem":
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        try:
            inputs = call.case.inputs() if call is not None else None
            return _descriptor(exercise.problem(Problem(str(error.get("code"))[:80], **data), inputs))
        except Exception:  # noqa: BLE001 - malformed data: still an unusable answer
            return error_descriptor("problem", "AnswerProblem", "the answer could not be used")
    clean = {key: (str(error.get(key))[:1000] if error.get(key) is not None else None)
             for key in ("type", "message", "line")}
    clean.update(kind=error["kind"], hint_id=None, hint=None)
    return clean


def _run_with_reruns(code_cells, items, *, timeout, sandboxed, view, problems, notes, seen):
    """Run until the harness finishes, skipping each cell or answer that killed or hung it.

    ``seen`` gets what the harness reported about itself: ``"tampered"`` (what it relies on
    changed, or its events were forged) and ``"background"`` (threads still running after the cells).

    Returns:
        tuple(dict, dict, dict, dict): per code-cell index ``{"status",
        "error"}``, per exercise id the record, the exercises whose answers
        stopped the sandbox (id -> "killed"/"hung"), and the timing.
    """
    skip_cells, skip_exercises, cell_failures, killers = set(), set(), {}, {}
    timing = {"start": 0.0, "cells": 0.0, "checks": 0.0, "runs": 0}
    startup_failures = 0
    for _ in range(len(code_cells) + len(items) + 3):
        run, records = _run_sandboxed(code_cells, items, timeout=timeout, sandboxed=sandboxed,
                                      view=view, skip_cells=skip_cells, skip_exercises=skip_exercises)
        timing["runs"] += 1
        for key in ("start", "cells", "checks"):
            timing[key] += run.timing.get(key, 0.0)
        if run.how == "tampered":
            seen.setdefault("tampered", []).append(f"the sandbox's event channel carried {run.problem}")
            return {}, {}, killers, timing
        if run.finished:
            break
        if run.current is None:
            startup_failures += 1
            if startup_failures >= 2:
                problems.add("grader-error")
                notes.append(f"the sandbox stopped outside any cell ({run.how}) twice")
                return {}, {}, killers, timing
            continue
        kind, where = run.current
        if kind == "cell" and where not in skip_cells:
            skip_cells.add(where)
            cell_failures[where] = (
                {"status": "kernel-died", "error": "killed the kernel"} if run.how == "died" else
                {"status": "timeout", "error": f"could not be interrupted after {timeout:g} s; skipped in a rerun"})
        elif kind == "exercise" and where not in skip_exercises:
            skip_exercises.add(where)
            killers[where] = "killed" if run.how == "died" else "hung"
        else:
            problems.add("grader-error")
            notes.append(f"the sandbox stopped twice at {kind} {where}")
            return {}, {}, killers, timing
    else:
        problems.add("grader-error")
        notes.append("the sandbox never finished")
        return {}, {}, killers, timing
    cells = {}
    for event in run.events:
        if event.get("event") == "done" and event.get("tampered"):
            seen.setdefault("tampered", []).append(
                "the code the harness relies on was changed: " + ", ".join(str(n)[:80] for n in event["tampered"][:5]))
        if event.get("event") == "cells-done" and event.get("background"):
            seen["background"] = [str(n)[:80] for n in event["background"][:5]]
        if event.get("event") == "end" and event.get("kind") == "cell" and isinstance(event.get("where"), int):
            status = event.get("status") if event.get("status") in ("ok", "error", "timeout") else "error"
            cells[event["where"]] = {"status": status, "error": str(event.get("error"))[:500]
                                     if event.get("error") is not None else None}
    for index, _ in code_cells:
        cells.setdefault(index, {"status": "skipped" if index in skip_cells else "error",
                                 "error": None if index in skip_cells else "no report from the sandbox"})
    cells.update(cell_failures)
    return cells, records, killers, timing
