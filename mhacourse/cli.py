"""The ``mhacourse`` command line.

Each sub-command lives in its own module, which provides ``configure(parser)``
to declare its arguments and ``run(args) -> int`` to do the work. Only the
module of the command being run is imported.
"""

import argparse
import importlib
import sys

COMMANDS = {
    "start": ("mhacourse.start", "copy the lessons and exercises into a working folder; register the course's kernel"),
    "lab": ("mhacourse.lab", "open the course in JupyterLab"),
    "grade": ("mhacourse.grading.batch.cli", "grade a folder of submitted exercise notebooks"),
    "build-exercises": ("mhacourse.grading.authoring.build", "write exercises/ and solutions/ from their sources"),
    "bench": ("mhacourse.bench", "time explicit vs fused attention on this device"),
    "doctor": ("mhacourse.doctor", "can this machine run the course? each check, and the command that fixes it"),
}


def build_parser(command=None):
    """The parser; the arguments of ``command`` (if given) are filled in."""
    parser = argparse.ArgumentParser(prog="mhacourse", description="Multi-head attention, the MLX way.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module)
        if name == command:
            importlib.import_module(module).configure(sub)
    return parser


SUBCOMMANDS = {("grade", "merge"): ("mhacourse.grading.classroom.merge",
                                     "join the shards of one run: what one unsharded run writes")}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if tuple(argv[:2]) in SUBCOMMANDS:  # e.g. `mhacourse grade merge PARTS...`, with its own --help
        module, help_text = SUBCOMMANDS[tuple(argv[:2])]
        parser = argparse.ArgumentParser(prog=f"mhacourse {' '.join(argv[:2])}", description=help_text)
        importlib.import_module(module).configure(parser)
        return importlib.import_module(module).run(parser.parse_args(argv[2:]))
    command = argv[0] if argv else None
    args = build_parser(command).parse_args(argv)
    return importlib.import_module(args.module).run(args)


def entry():
    """The ``mhacourse`` console script: on Linux, first restart on an optimised BLAS."""
    from mhacourse.blas import reexec_with_blas

    reexec_with_blas()
    sys.exit(main())


if __name__ == "__main__":
    entry()
