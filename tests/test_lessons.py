"""Repository-wide checks on the course material.

1. Nothing a learner or an operator reads names a path outside the repository (an
   absolute path outside the system folders, a ../ path that climbs out, a *.md the
   repository does not hold):
   notebooks, exercises, solutions, exercise sources, the README, docstrings
   (all of ``mhacourse/`` and ``benchmarks/``), data files and deploy files.
   Relative links in markdown must resolve to a file inside the repository.
2. Every lesson ``notebooks/NN_*.ipynb`` (01–08) ends by linking its exercise
   notebook ``../exercises/NN_*.ipynb`` ("Now do ...") and saying, in the same
   paragraph, what it practises (a dozen words or more); lesson 00,
   which has no exercise notebook, links lesson 01 and ``../exercises/01_*.ipynb``.
   A lesson in ``EXERCISES_PENDING`` (its checked exercises are still being written with the
   grader) has no exercise notebook yet, and its last cell says so: "no exercise notebook yet".
3. Every exercise notebook's first cell links the lesson it follows.
"""

import json
import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_FOLDERS = ("notebooks", "exercises", "solutions", "exercise_sources")
TEXT_FILES = ("README.md", "deploy/*", "mhacourse/**/*.py", "mhacourse/**/*.json", "mhacourse/**/*.js",
              "benchmarks/*.py")

# What a path outside the repository looks like, with no list of outside names: an absolute
# path into the folder the repository sits in, a ../ path that climbs out of the repository,
# or (in prose) a markdown document (*.md) the repository does not hold.
# (Not checked when the checkout sits in the temporary folder, as a CI clone does: paths such
# as the sandbox's own /tmp/work would match.)
BESIDE = (None if ROOT.parent == Path(tempfile.gettempdir()).resolve() else
          re.compile(re.escape(str(ROOT.parent)) + r"/(?!" + re.escape(ROOT.name) + r"/)[\w.-]"))
CLIMBING = re.compile(r"(?<![\w./-])((?:\.\./)+[\w.-][\w./-]*)")
DOCUMENT = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")
REPO_DOCUMENTS = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts and ".git" not in p.parts}


def outside_paths(path, text, is_markdown=True):
    """What in ``text`` (from the file ``path``) names a path outside the repository."""
    found = [f"{m.group(0)!r} (a path beside the repository)" for m in BESIDE.finditer(text)] if BESIDE else []
    for match in CLIMBING.finditer(text):
        target = (path.parent / match.group(1).rstrip(".")).resolve()
        if not target.is_relative_to(ROOT):
            found.append(f"{match.group(1)!r} (climbs out of the repository)")
        elif not target.exists():
            found.append(f"{match.group(1)!r} (points at nothing in the repository)")
    if is_markdown:
        found += [f"{m.group(1)!r} (a document the repository does not hold)" for m in DOCUMENT.finditer(text)
                  if m.group(1) not in REPO_DOCUMENTS]
    return found


# Markdown links and HTML src/href: ](target) or src="target" / href="target".
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:src|href)=\"([^\"]+)\"")


def texts():
    """``(path, [(where, text, is_markdown)])`` for every file the checks cover."""
    for folder in NOTEBOOK_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            yield path, [(f"cell {i}", "".join(cell["source"]), cell["cell_type"] == "markdown")
                         for i, cell in enumerate(cells)]
    for pattern in TEXT_FILES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                yield path, [(f"line {n}", line, path.suffix == ".md")
                             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]


def outside_link(path, target):
    """Why a relative link leaves the repository or points at nothing, or ``None``."""
    if re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|mailto:)", target, re.IGNORECASE):
        return None  # a URL, an anchor, data: or an e-mail address
    relative = target.split("#")[0].split("?")[0]
    if not relative:
        return None
    resolved = (path.parent / relative).resolve()
    if not resolved.is_relative_to(ROOT):
        return "leaves the repository"
    if not resolved.exists():
        return "points at nothing"
    return None


def test_nothing_names_a_path_outside_the_repository():
    found = []
    checked = 0
    for path, parts in texts():
        checked += 1
        name = path.relative_to(ROOT)
        for where, text, is_markdown in parts:
            found += [f"{name} {where}: {problem}" for problem in outside_paths(path, text, is_markdown)]
            if is_markdown:
                for match in LINK.finditer(text):
                    target = match.group(1) or match.group(2)
                    problem = outside_link(path, target)
                    if problem:
                        found.append(f"{name} {where}: link {target!r} {problem}")
    assert checked > 30, f"only {checked} files checked: did the layout change?"
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_check_catches_outside_paths():
    notebooks = ROOT / "notebooks" / "x.ipynb"
    bad = ["see ../../notes/facts.txt", "see ../notes/facts.md", "NOTES.md says", "`../../../x`"]
    bad += [f"measured in {ROOT.parent}/notes/x"] if BESIDE else []
    assert all(outside_paths(notebooks, line) for line in bad), [outside_paths(notebooks, b) for b in bad]
    fine = ["shared by every head", "https://example.org/srv/x", "mhacourse/data/gpu.json", f"{ROOT}/README.md",
            "see ../exercises/01_attention_one_head.ipynb", "the README.md", "/usr/bin/chromium", "a/b/c"]
    assert not any(outside_paths(notebooks, line) for line in fine), [outside_paths(notebooks, f) for f in fine]
    assert outside_link(notebooks, "../../elsewhere.md") == "leaves the repository"
    assert outside_link(notebooks, "../exercises/none.ipynb") == "points at nothing"
    assert outside_link(notebooks, "https://github.com/ml-explore/mlx") is None


# Lessons whose exercise notebook does not exist yet, and why. Remove a lesson from here when its
# exercises land: the test then fails until the lesson links them.
EXERCISES_PENDING = {}  # every lesson but 00 has its exercise notebook


def lessons():
    return sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def markdown_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def exercise_for(number):
    found = sorted((ROOT / "exercises").glob(f"{number}_*.ipynb"))
    return found[0] if found else None


@pytest.mark.parametrize("lesson", lessons(), ids=lambda p: p.name)
def test_every_lesson_ends_with_its_exercise_notebook(lesson):
    number = lesson.name[:2]
    last = markdown_cells(lesson)[-1]
    exercise = exercise_for(number)
    if number in EXERCISES_PENDING:
        assert exercise is None, f"{exercise} exists: remove {number} from EXERCISES_PENDING and link it"
        assert "no exercise notebook yet" in last, \
            f"{lesson.name}: its last cell should say it has no exercise notebook yet"
        return
    if number == "00":
        assert exercise is None, "lesson 00 now has exercises: link them like the other lessons"
        exercise = exercise_for("01")
        assert re.search(r"\]\(01_[\w-]+\.ipynb\)", last), f"{lesson.name}: its last cell should link lesson 01"
    else:
        assert exercise is not None, f"no exercises/{number}_*.ipynb for {lesson.name}"
    link = f"](../exercises/{exercise.name})"
    assert link in last, f"{lesson.name}: its last markdown cell should link {link[2:-1]}"
    paragraphs = re.split(r"\n\s*\n", last)
    index = next(i for i, p in enumerate(paragraphs) if link in p)
    paragraph = " ".join(paragraphs[index:index + 2 if paragraphs[index].startswith("#") else index + 1])
    assert re.search(r"now do", paragraph, re.IGNORECASE), f"{lesson.name}: say \"Now do\" with the link"
    described = re.sub(r"\[[^\]]*\]\([^)]*\)|now do", " ", paragraph, flags=re.IGNORECASE)
    assert len(re.findall(r"[A-Za-z]{2,}", described)) >= 12, (
        f"{lesson.name}: next to the link, say what {exercise.name} practises")


def test_every_lesson_from_01_to_08_is_there():
    numbers = {p.name[:2] for p in lessons()}
    expected = {f"{n:02d}" for n in range(9)}
    assert expected <= numbers, f"missing lessons: {sorted(expected - numbers)}"


@pytest.mark.parametrize("exercise", sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_exercise_notebook_says_which_lesson_it_follows(exercise):
    lesson = sorted((ROOT / "notebooks").glob(f"{exercise.name[:2]}_*.ipynb"))
    assert lesson, f"{exercise.name} has no lesson notebooks/{exercise.name[:2]}_*.ipynb"
    first = markdown_cells(exercise)[0]
    assert f"](../notebooks/{lesson[0].name})" in first, (
        f"{exercise.name}: its first cell should link the lesson it follows, ../notebooks/{lesson[0].name}")
