"""Small, fast stand-ins for tuning studies: a synthetic corpus, a tiny budget, a sweep launched as a
user would (``python -m hw3sweep``), and the PostgreSQL URL CI provides."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]
# set by .ci/with-postgres.sh (a throw-away cluster); absent locally
POSTGRES_URL = os.environ.get("HW3_TEST_POSTGRES_URL")
# a few batches of a tiny corpus: a trial takes about a second once the worker has started
TINY = ["max_train_batches=2", "max_eval_batches=2", "epochs=2", "log_interval=1", "precision=fp32"]


def load_benchmark(name: str) -> types.ModuleType:
    """``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_corpus(folder: Path, seed: int = 0) -> Path:
    """wiki.{train,valid,test}.tokens of random words from a 60-word vocabulary."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", 300), ("valid", 40), ("test", 40)):
        text = "".join(" " + " ".join(rng.choice(words) for _ in range(10)) + " \n" for _ in range(lines))
        (folder / f"wiki.{name}.tokens").write_text(text, encoding="utf-8")
    return folder


def sweep_command(
    corpus: Path, study: str, storage: str, trials: int, workers: int, *extra: str
) -> list[str]:
    return [
        sys.executable, "-m", "hw3sweep", "--study", study, "--storage", storage, "--trials", str(trials),
        "--workers", str(workers), "--budget", "quick", "--corpus", str(corpus), "--device", "cpu",
        "--heartbeat", "1", "--no-report", *extra,
    ]  # fmt: skip


def sweep_env() -> dict[str, str]:
    code = str(REPO / "code")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")]))}


def start_sweep(cwd: Path, command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=cwd, env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    """The sweep's output once it ends (killed if it outlives ``timeout``)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        process.kill()
        raise
    return output


def load(study: str, storage: str) -> optuna.Study:
    from hw3tools.studies import open_storage

    return optuna.load_study(study_name=study, storage=open_storage(storage))


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path) -> str:
    """A journal file, and PostgreSQL where CI started it (skipped with the reason otherwise)."""
    if request.param == "journal":
        return str(tmp_path / "build" / "sweeps" / "study.journal")
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: run through .ci/with-postgres.sh (sets HW3_TEST_POSTGRES_URL)")
    return POSTGRES_URL
