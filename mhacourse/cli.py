"""The ``mhacourse`` command line.

Each sub-command lives in its own module, which provides ``configure(parser)``
to declare its arguments and ``run(args) -> int`` to do the work. Only the
module of the command being run is imported.

``-v``/``--verbose`` and ``-q``/``--quiet`` (before or after the command) set how
much the ``logging`` module shows on stderr: warnings by default, progress
with ``-v`` (``-vv``: debugging detail), errors only with ``-q``. A command's
own output (a report, a table) is printed whatever the level.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMANDS = {
    "start": ("mhacourse.start", "copy the lessons and exercises into a working folder; register the course's kernel"),
    "lab": ("mhacourse.lab", "open the course in JupyterLab"),
    "grade": ("mhacourse.grading.batch.cli", "grade a folder of submitted exercise notebooks"),
    "gradescope": ("mhacourse.grading.classroom.autograder", "build the Gradescope autograder zip (and run it there)"),
    "build-exercises": ("mhacourse.grading.authoring.build", "write exercises/ and solutions/ from their sources"),
    "bench": ("mhacourse.bench", "time explicit vs fused attention on this device"),
    "doctor": ("mhacourse.doctor", "can this machine run the course? each check, and the command that fixes it"),
}


def _verbosity_arguments(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=default,
                       help="show progress (-vv: debugging detail) on stderr")
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="show errors only")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``command`` (if given) are filled in."""
    parser = argparse.ArgumentParser(prog="mhacourse", description="Multi-head attention, the MLX way.")
    _verbosity_arguments(parser, default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # Also after the command (`mhacourse bench -v`); SUPPRESS keeps a flag given before it.
        _verbosity_arguments(sub, default=argparse.SUPPRESS)
        sub.set_defaults(module=module)
        if name == command:
            importlib.import_module(module).configure(sub)
    return parser


def log_level(verbose: int | None = None, quiet: bool | None = None) -> int:
    """The ``logging`` level for ``-v`` given ``verbose`` times, or ``-q``."""
    if quiet:
        return logging.ERROR
    return {None: logging.WARNING, 0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


class _Formatter(logging.Formatter):
    """``mhacourse: message`` for progress, ``mhacourse: warning: message`` above it (as argparse writes)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"mhacourse: {record.levelname.lower()}: {message}"
        return f"mhacourse: {message}"


def configure_logging(level: int) -> logging.Handler:
    """Show the ``mhacourse`` loggers' records at ``level`` and above on the current stderr.

    Called again (as tests do), it replaces the handler it installed before.
    """
    logger = logging.getLogger("mhacourse")
    for handler in [h for h in logger.handlers if getattr(h, "_mhacourse_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._mhacourse_cli = True
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


SUBCOMMANDS = {("grade", "merge"): ("mhacourse.grading.classroom.merge",
                                     "join the shards of one run: what one unsharded run writes"),
               ("grade", "merge-manual"): ("mhacourse.grading.classroom.merge_manual",
                                            "fold the scores of written answers, graded by hand, into a run's results")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    words = [arg for arg in argv if not arg.startswith("-")]
    if tuple(words[:2]) in SUBCOMMANDS and argv[:2] == words[:2]:  # `mhacourse grade merge PARTS...`, own --help
        module, help_text = SUBCOMMANDS[tuple(words[:2])]
        parser = argparse.ArgumentParser(prog=f"mhacourse {' '.join(words[:2])}", description=help_text)
        importlib.import_module(module).configure(parser)
        configure_logging(logging.WARNING)
        return importlib.import_module(module).run(parser.parse_args(argv[2:]))
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    configure_logging(log_level(args.verbose, args.quiet))
    return importlib.import_module(args.module).run(args)


def entry() -> None:
    """The ``mhacourse`` console script: on Linux, first restart on an optimised BLAS."""
    from mhacourse.blas import reexec_with_blas

    reexec_with_blas()
    sys.exit(main())


if __name__ == "__main__":
    entry()
