"""Who submitted each notebook, and whether it was late.

A submission's student comes from the first source that knows it:

1. **Gradescope's** ``submission_metadata.yml``, in the submission's folder or
   its parent (Gradescope's "Export submissions" puts one per
   ``submission_NNN/`` folder; inside the autograder it is
   ``/autograder/submission_metadata.yml``): the first of ``:users:`` gives
   ``:email:``, ``:name:`` and ``:sid:``; ``:submission_time:`` and
   ``:assignment: :due_date:`` tell whether, and by how many days, it is late.
2. **Canvas's** "Download submissions" file names,
   ``login_userid_submissionid_filename`` with ``LATE_`` after the login when
   late (``doejane_LATE_4021_77_02.ipynb``: login ``doejane``, Canvas user id
   ``4021``, late). Canvas does not say by how many days.
3. **A roster** (``--roster FILE``): Canvas's gradebook export (``Student, ID,
   SIS User ID, SIS Login ID, Section``) or any CSV with id, login or name
   columns. A submission whose folder (or file name) equals a roster entry's
   login, SIS id, Canvas id or name is that student. The roster also completes
   what 1 and 2 found (a Canvas login gets its user id and name).
4. **Without a roster**, the folder's name (else the file's name) is taken as
   the student's login, unchecked (``source`` ``folder``): Canvas matches it
   only if it is the SIS login. Give ``--roster`` to have it checked.

Names are compared NFC-normalised and case-folded, so ``Rene\\u0301e`` (a
decomposed accent, as macOS writes file names) matches ``Renée``. With a
roster, a submission none of these identify is *unmatched*: flagged ``unmatched``,
listed at the end of the run, exported with an empty grade, never a 0.

**Late policy** (``--late-policy``): ``none`` (default: late is only a column),
``zero`` (a late submission scores 0), or ``percent:N`` (N percent off per day
late, at most 100; the days come from Gradescope's metadata; a Canvas ``LATE_``
file, whose days are unknown, counts as one day).
"""

import csv
import datetime
import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

METADATA_NAME = "submission_metadata.yml"
_CANVAS_DOWNLOAD = re.compile(r"^(?P<login>[^_]+)_(?P<late>LATE_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
_ROSTER_FIELDS = {
    "canvas_id": ("id", "canvas id", "canvas user id", "user id", "userid"),
    "sid": ("sis user id", "sid", "student id", "student number"),
    "login": ("sis login id", "login", "login id", "username", "user", "email", "e-mail", "netid"),
    "name": ("student", "name", "student name", "full name"),
    "section": ("section",),
}


def normal(text):
    """NFC, case-folded, inner blanks collapsed: how names and logins are compared."""
    text = unicodedata.normalize("NFC", str(text or ""))
    return " ".join(text.casefold().split())


@dataclass
class Identity:
    """Who submitted one notebook.

    Attributes:
        student (str): The id the exports use: the Canvas user id, SIS id,
            login, email or name, the first known; "" when unmatched.
        name (str): The student's name ("" when unknown).
        login (str): Login or email ("" when unknown).
        sid (str): SIS user id / Gradescope ``:sid:`` ("" when unknown).
        canvas_id (str): Canvas user id ("" when unknown).
        section (str): From the roster ("" when unknown).
        source (str): ``gradescope``, ``canvas``, ``roster``, ``folder`` or ``unmatched``.
        late (bool): Submitted after the due date.
        days_late (int or None): Whole days late (rounded up), None when unknown.
        matched (bool): False when no source identified the student.
    """

    student: str = ""
    name: str = ""
    login: str = ""
    sid: str = ""
    canvas_id: str = ""
    section: str = ""
    source: str = "unmatched"
    late: bool = False
    days_late: int = None
    matched: bool = False

    def as_dict(self):
        return asdict(self)


def _yaml_value(data, key):
    """``data[":key"]`` or ``data["key"]`` (Gradescope writes Ruby-style symbol keys)."""
    if not isinstance(data, dict):
        return None
    return data.get(f":{key}", data.get(key))


def _when(value):
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    return None


def read_metadata(path, folder=None):
    """An :class:`Identity` from a Gradescope ``submission_metadata.yml`` (None if unreadable or empty).

    The file describes one submission (``:users:`` at the top, as in the autograder), or, in an
    export's top folder, each ``submission_NNN`` folder by name (``folder``).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if isinstance(data, dict) and folder is not None and isinstance(data.get(folder), dict):
        data = data[folder]
    users = _yaml_value(data, "users") or _yaml_value(data, "submitters")
    user = users[0] if isinstance(users, list) and users and isinstance(users[0], dict) else None
    if user is None:
        return None
    found = Identity(name=str(_yaml_value(user, "name") or ""), login=str(_yaml_value(user, "email") or ""),
                     sid=str(_yaml_value(user, "sid") or ""), source="gradescope", matched=True)
    submitted = _when(_yaml_value(data, "created_at") or _yaml_value(data, "submission_time"))
    due = _when(_yaml_value(_yaml_value(data, "assignment"), "due_date"))
    if submitted and due and submitted > due:
        found.late = True
        found.days_late = math.ceil((submitted - due).total_seconds() / 86400)
    found.student = found.sid or found.login or found.name
    found.matched = bool(found.student)
    return found if found.matched else None


def metadata_for(path):
    """The ``submission_metadata.yml`` (or ``.json``) beside the notebook or in its parent folder, or None."""
    folder = Path(path).parent
    for place in (folder, folder.parent):
        for name in (METADATA_NAME, METADATA_NAME.replace(".yml", ".json")):
            candidate = place / name
            if candidate.is_file():
                return candidate
    return None


def from_canvas_name(file_name):
    """An :class:`Identity` from a Canvas download file name, or None."""
    match = _CANVAS_DOWNLOAD.match(unicodedata.normalize("NFC", PurePosixPath(file_name).name))
    if match is None:
        return None
    late = bool(match["late"])
    return Identity(student=match["user"], login=match["login"], canvas_id=match["user"], source="canvas",
                    late=late, days_late=None, matched=True)


def read_roster(path):
    """The students of a roster CSV: one dict (``canvas_id``, ``sid``, ``login``, ``name``, ``section``) each.

    Canvas's "Points Possible" row and "Test Student" are left out.

    Raises:
        ValueError: when the file cannot be read or has no id, login or name column.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--roster: cannot read {str(path)!r} ({error})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ValueError(f"--roster {str(path)!r} is empty")
    header = [normal(cell) for cell in rows[0]]
    columns = {}
    for field, names in _ROSTER_FIELDS.items():
        for name in names:
            if name in header and field not in columns and header.index(name) not in columns.values():
                columns[field] = header.index(name)
    if not {"canvas_id", "sid", "login", "name"} & set(columns):
        raise ValueError(f"--roster {str(path)!r} has no id, login or name column (its header: {rows[0]})")
    students = []
    for row in rows[1:]:
        entry = {field: (row[index].strip() if index < len(row) else "") for field, index in columns.items()}
        if not any(entry.values()) or "points possible" in normal(entry.get("name")):
            continue
        if normal(entry.get("name")) == "test student":
            continue
        students.append({field: entry.get(field, "") for field in _ROSTER_FIELDS})
    return students


class Roster:
    """Looks students up by any of their ids, login (or the part of an email before ``@``) or name."""

    def __init__(self, students):
        self.students = list(students)
        self._index = {}
        for student in self.students:
            for key in self._keys(student):
                self._index.setdefault(key, student)

    @staticmethod
    def _keys(student):
        keys = [normal(student.get(field)) for field in ("canvas_id", "sid", "login", "name")]
        login = normal(student.get("login"))
        if "@" in login:
            keys.append(login.split("@")[0])
        return [key for key in keys if key]

    def find(self, *candidates):
        for candidate in candidates:
            found = self._index.get(normal(candidate))
            if found is not None:
                return found
        return None


def _complete(identity, entry):
    for field in ("name", "login", "sid", "canvas_id", "section"):
        if entry.get(field) and not getattr(identity, field):
            setattr(identity, field, entry[field])
    return identity


def _student_id(identity):
    return identity.canvas_id or identity.sid or identity.login or identity.name


def identify(path, key, roster=None):
    """The :class:`Identity` of the submission at ``path`` whose key (path relative to its
    SUBMISSION folder) is ``key``."""
    key = PurePosixPath(str(key))
    found = None
    metadata = metadata_for(path)
    if metadata is not None:
        found = read_metadata(metadata, folder=Path(path).parent.name)
    if found is None:
        found = from_canvas_name(key.name)
    if found is not None:
        if roster is not None:
            entry = roster.find(found.canvas_id, found.sid, found.login, found.name)
            if entry is not None:
                _complete(found, entry)
        found.student = _student_id(found)
        return found
    folder = key.parts[0] if len(key.parts) > 1 else None
    if roster is not None:
        entry = roster.find(*[c for c in (folder, key.stem) if c])
        if entry is not None:
            found = _complete(Identity(source="roster", matched=True), entry)
            found.student = _student_id(found)
            return found
        return Identity()
    # No roster to check against: the folder's name (else the file's) is taken as the login, as given.
    name = unicodedata.normalize("NFC", folder or key.stem)
    return Identity(student=name, login=name, source="folder", matched=True)


def identities(paths, keys, roster_file=None):
    """One :class:`Identity` (as a dict) per submission."""
    roster = Roster(read_roster(roster_file)) if roster_file else None
    return [identify(path, key, roster).as_dict() for path, key in zip(paths, keys)]


def parse_late_policy(text):
    """``"none"``, ``"zero"`` or ``"percent:N"`` → ``(kind, N)``.

    Raises:
        ValueError: naming ``--late-policy`` and its forms.
    """
    text = str(text or "none").strip().lower()
    if text in ("none", "zero"):
        return text, 0.0
    match = re.fullmatch(r"percent:(\d+(?:\.\d+)?)", text)
    if match and 0 <= float(match[1]) <= 100:
        return "percent", float(match[1])
    raise ValueError(f"--late-policy must be none, zero or percent:N (N from 0 to 100, per day late); got {text!r}")


def late_points(points, who, policy="none"):
    """``points`` after the late policy, for a submission whose identity is ``who`` (a dict or None)."""
    kind, percent = parse_late_policy(policy)
    if not who or not who.get("late") or kind == "none":
        return points
    if kind == "zero":
        return 0.0
    days = who.get("days_late") or 1
    return round(points * max(0.0, 1 - percent * days / 100), 4)
