"""Submissions per second of ``invoke grade`` on the test corpus (tests/grade_corpus.py), at 1 and N jobs.

    python benchmarks/bench_grade.py [--jobs 1 4] [--copies 1] [--archive moodle.zip]

Builds the generated Moodle archive (38 submissions: valid ones, every rule broken once, the hostile zips,
a 1 GiB zip bomb, a 2,000-page PDF), or takes ``--archive``, and grades it once per job count into a
temporary folder, printing the wall-clock time and submissions per second. ``--copies`` repeats the corpus
(each copy under its own folder names) for a longer, steadier measurement. Run it alone on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "code"), str(REPO / "tests")]

from hw3grade.cli import grade  # noqa: E402
from hw3grade.runner import default_jobs  # noqa: E402


def corpus_archive(folder: Path, copies: int) -> tuple[Path, int]:
    from grade_corpus import build_corpus, stand_in_notebook

    corpus = build_corpus(stand_in_notebook(), folder)
    if copies == 1:
        return corpus.archive, len(corpus.expected)
    repeated = folder / "moodle-repeated.zip"
    with zipfile.ZipFile(corpus.archive) as source, zipfile.ZipFile(repeated, "w") as target:
        for copy in range(copies):
            for info in source.infolist():
                target.writestr(f"copy{copy}-{info.filename}", source.read(info))
    return repeated, len(corpus.expected) * copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=sorted({1, default_jobs()}))
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--archive", help="grade this archive instead of the generated corpus")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        folder = Path(tmp)
        if args.archive:
            archive, count = Path(args.archive), None
        else:
            archive, count = corpus_archive(folder, args.copies)
        print(f"{archive.name}: {count if count is not None else '?'} submissions, {default_jobs()} cores")
        print(f"{'jobs':>4} {'seconds':>8} {'submissions/s':>14}")
        for jobs in args.jobs:
            started = time.perf_counter()
            rows = grade([archive], folder / f"out-{jobs}", jobs=jobs, progress=False, echo=lambda line: None)
            seconds = time.perf_counter() - started
            print(f"{jobs:>4} {seconds:>8.2f} {len(rows) / seconds:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
