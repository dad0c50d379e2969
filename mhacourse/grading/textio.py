"""Writing what students produced: nothing lost, nothing executed, nothing outside its folder.

Every text the grader writes may hold what a submission put there: an error
message with a lone surrogate (``chr(0xD800)``), a file name that is not
UTF-8, a student name that starts with ``=``. These helpers make each of them
harmless:

* :func:`write_text` writes UTF-8 with ``backslashreplace`` (a lone surrogate
  becomes ``\\ud800``, never an exception after a whole class was graded),
  through a temporary file and a rename, so a crash leaves the old file whole;
* :func:`safe_name` turns any text into one file name (no ``/``, no ``..``, no
  control characters): a key such as ``/etc/x`` stays inside its folder;
* :func:`spreadsheet_cell` neutralises a CSV cell that a spreadsheet would
  run as a formula (a leading ``=``, ``+``, ``-``, ``@``, tab or carriage
  return gets a ``'`` in front);
* :func:`csv_text` writes rows with every cell neutralised.
"""

import csv
import io
import os
import re
import unicodedata
from pathlib import Path

__all__ = ["write_text", "safe_name", "spreadsheet_cell", "csv_text", "printable"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE = re.compile(r"[^\w.\-]+", flags=re.UNICODE)


def printable(text):
    """``text`` with lone surrogates (from non-UTF-8 file names or error messages) written as escapes."""
    text = str(text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_text(path, text):
    """Write ``text`` to ``path`` as UTF-8, losslessly escaped, replacing the file in one step."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8", errors="backslashreplace", newline="") as file:
        file.write(text)
    os.replace(temporary, path)


def safe_name(text, fallback="submission"):
    """One file name made from ``text`` (a key, a path, a student's name), without a suffix.

    Path separators become ``__``; anything but letters, digits, ``.``, ``-``
    and ``_`` becomes ``_``; leading dots go, so the name never climbs out of
    its folder or hides itself.
    """
    text = unicodedata.normalize("NFC", printable(text))
    parts = [p for p in re.split(r"[\\/]+", text) if p not in ("", ".", "..")]
    name = "__".join(_UNSAFE.sub("_", part) for part in parts).lstrip(".") or fallback
    return name[:150]


def spreadsheet_cell(value):
    """A CSV cell a spreadsheet shows as text: ``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_text(rows):
    """CSV text of ``rows`` (lists of cells), each cell neutralised by :func:`spreadsheet_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([spreadsheet_cell(cell) for cell in row])
    return buffer.getvalue()
