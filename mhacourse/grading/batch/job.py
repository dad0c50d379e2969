"""What the grader asks of a lesson: its exercises, their calls' inputs from the run's secret, the
course view the sandbox gets, and the policy read from a submission's source.
"""

import hashlib
from functools import cache, lru_cache


def _registry():
    from mhacourse.grading import exercise_ids, get_exercise

    exercises = {}
    for exercise_id in exercise_ids():
        exercise = get_exercise(exercise_id)
        exercises.setdefault(str(exercise.lesson), []).append(
            {"id": exercise.id, "answer_name": exercise.answer_name, "max_points": float(exercise.points)}
        )
    return exercises


def lesson_exercises(lesson):
    """The exercises of one lesson, in the registry's order.

    Args:
        lesson (str): two digits, e.g. ``"02"``.

    Returns:
        list(dict): ``{"id", "answer_name", "max_points"}`` per exercise
        (empty for a lesson the registry does not know).
    """
    return list(_registry().get(lesson, []))


def _rng(secret, exercise_id):
    """The generator of an exercise's hidden inputs: the same for every submission of a run."""
    import numpy as np

    digest = hashlib.sha256(f"{secret}\0{exercise_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=8)
def _lesson_job(lesson, secret, timeout):
    """Per exercise of ``lesson``: its calls, their pickled inputs and what the sandbox needs to
    know to call the answer (built once per process)."""
    from mhacourse.grading import get_exercise
    from mhacourse.grading.compute import DEFAULT_TIME_LIMIT, calls_for
    from mhacourse.grading.sandbox import codec

    items = []
    for exercise in lesson_exercises(lesson):
        ex = get_exercise(exercise["id"])
        calls = calls_for(ex, _rng(secret, ex.id))
        pickled = []
        for call in calls:
            inputs = call.case.inputs()
            pickled.append(codec.pickle_inputs((inputs, ex.prepare(inputs))))
        items.append({"id": ex.id, "answer_name": ex.answer_name, "kind": ex.kind, "driver": ex.driver,
                      "calls": len(calls), "time_limit": float(min(DEFAULT_TIME_LIMIT, timeout)),
                      "record": _recorded_names(ex), "_inputs": pickled, "_calls": calls})
    return items


def _recorded_names(exercise):
    """Dotted names (``module.attribute``) the sandbox watches while ``exercise``'s answer runs."""
    from mhacourse.grading import policy

    names = []
    for pattern in exercise.forbidden or ():
        for module, attribute, _, _ in policy._expand(pattern).values():
            names.append(f"{module.__name__}.{attribute}")
    return sorted(set(names))


def hint_tiers(nb, exercises):
    """Per exercise id, the hint tier ``check`` showed the notebook (:func:`.hints.tiers_shown`; default 1)."""
    from mhacourse.grading import hints

    shown = hints.tiers_shown(cell.source for cell in nb.cells if cell.cell_type == "code") if nb is not None else {}
    return {exercise["id"]: shown.get(exercise["id"], 1) for exercise in exercises}


@cache
def _view(lesson):
    """The course view for ``lesson``: earlier lessons' modules, none holding this lesson's implementations."""
    from mhacourse.grading import get_exercise, policy
    from mhacourse.grading.batch import view

    excluded = set()
    for exercise in lesson_exercises(lesson):
        for obj, _ in policy._implementations(get_exercise(exercise["id"])).values():
            module = str(getattr(obj, "__module__", "") or "")
            if module.startswith("mhacourse.") and not module.startswith("mhacourse.grading"):
                excluded.add(module)
    return view.build_view(lesson, frozenset(excluded))


@cache
def _policy_tables(lesson):
    """What each exercise of ``lesson`` forbids by name, and the course implementations it may not use."""
    from mhacourse.grading import get_exercise, policy

    forbidden, implementations = {}, {}
    for exercise in lesson_exercises(lesson):
        ex = get_exercise(exercise["id"])
        forbidden[ex.id] = policy.forbidden_names(ex)
        implementations[ex.id] = {key: (policy._qualname(obj), owner)
                                  for key, (obj, owner) in policy._implementations(ex).items()}
    return forbidden, implementations


@cache
def _allowed_sources(lesson):
    """The code cells of ``lesson``'s exercise notebook and of its worked solutions (learners may reuse them)."""
    from mhacourse.grading.authoring import build

    for path in build.all_source_paths():
        source = build.read_source(path)
        if str(source.metadata.get("mhacourse", {}).get("lesson")) == lesson:
            notebooks = build.build_notebook(source, path=path)
            return tuple(cell.source for nb in notebooks for cell in nb.cells if cell.cell_type == "code")
    return ()


def audit_source(nb, lesson):
    """The policy decided from the submission's source (:mod:`.source_policy`)."""
    from mhacourse.grading import source_policy

    forbidden, implementations = _policy_tables(lesson)
    cells = [(number, cell.source) for number, cell in enumerate(nb.cells, 1) if cell.cell_type == "code"]
    return source_policy.audit(cells, [(e["id"], e["answer_name"]) for e in lesson_exercises(lesson)],
                               forbidden=forbidden, implementations=implementations,
                               allowed_sources=_allowed_sources(lesson))
