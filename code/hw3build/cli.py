"""``python -m hw3build <command> [options]``: the build's one command line; ``invoke`` calls it.

Commands (``python -m hw3build <command> --help`` for each one's options):

- ``build``: the submission zip (:mod:`hw3build.build`);
- ``validate``: check a zip against the course's rules (:mod:`hw3build.submission.validate`);
- ``clean``: empty the build folder (refused while a build holds its lock);
- ``theory``: the numerical checks behind the theory answers (:mod:`hw3build.report.theory`), under the
  build lock when they write into the build folder;
- ``report``: only the PDF, from an existing run folder (:mod:`hw3build.report.report`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hw3tools.locks import LockBusy, build_lock_for
from hw3tools.repo import BUILD_DIR


def _build(argv: Sequence[str]) -> int:
    from hw3build.build import main

    return main(list(argv))


def _validate(argv: Sequence[str]) -> int:
    from hw3build.submission.validate import main

    return main(list(argv))


def _report(argv: Sequence[str]) -> int:
    from hw3build.report.report import main

    return main(list(argv))


def _clean(argv: Sequence[str]) -> int:
    from hw3build.build import clean

    parser = argparse.ArgumentParser(prog="python -m hw3build clean", description="Empty the build folder.")
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help="the build folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        removed = clean(args.build_dir)
    except LockBusy as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"emptied {args.build_dir}" if removed else f"nothing to remove in {args.build_dir}")
    return 0


def _theory(argv: Sequence[str]) -> int:
    from hw3build.report.theory import DEFAULT_OUT, main

    if {"-h", "--help"} & set(argv):
        return main(list(argv))
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--out", default=str(DEFAULT_OUT))
    where.add_argument("--pdf")
    known, _ = where.parse_known_args(argv)
    try:
        with build_lock_for(*(p for p in (known.out, known.pdf) if p), build_dir=BUILD_DIR):
            return main(list(argv))
    except LockBusy as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "build": _build,
    "validate": _validate,
    "clean": _clean,
    "theory": _theory,
    "report": _report,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])
