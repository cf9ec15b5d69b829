"""What the report is made of, as one value (the build's report stage, ``python -m hw3build report`` and
the tests pass it instead of the same six arguments)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReportInputs:
    """What the report is made of: the executed notebook (``build/run/<key>/``, its figures beside it),
    its ``metrics.json`` record, the theory answers (``theory/``) and their checks (``build/theory/``),
    the config (a :class:`hw3build.submission.config.SubmissionConfig`: students, profile, hparams), and
    the build record's input part (any JSON-like dict, printed in the appendix)."""

    executed_nb: Path
    metrics: Mapping[str, Any]
    theory_src: Path
    checks_dir: Path
    config: Any
    record: Mapping[str, Any]
