"""The build orchestrator with fake heavy stages: order, records, failures that keep the last good zip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hw3build.build as build_module
import nbformat
import pytest
from hw3.hparams import profile_defaults
from hw3.metrics import METRICS_SCHEMA
from hw3build.build import (
    CELL_TIMEOUT_S,
    STAGE_NAMES,
    TRAINING_TIMEOUT_S,
    BuildFailed,
    Stages,
    build,
    build_paths,
    clean,
)
from hw3build.notebook.execute import ExecutionResult
from hw3build.submission.validate import validate_zip
from submission_fixtures import (
    ID1,
    ID2,
    STEM,
    executed_notebook,
    good_pdf_pages,
    lock_held_elsewhere,
    pdf_bytes,
)

REPO = Path(__file__).resolve().parents[1]
METRICS = {
    "schema": METRICS_SCHEMA,
    "profile": "quick",
    "hparams": {},
    "run": {"device": "cpu", "device_name": "CPU", "precision": "fp32", "torch_version": "2.13.0"},
    "data": {"vocab_size": 28782, "itos_sha256": "ab" * 32},
    "history": [
        {"epoch": 1, "train_loss": 6.0, "val_loss": 5.5, "val_ppl": 244.69, "lr": 1e-3, "seconds": 1.0}
    ],
    "interrupted": False,
    "timings": {"train_seconds": 1.0, "total_seconds": 2.0},
    "sentences": ["the game was released"] * 3,
    "best_epoch": 2,
    "best_val_loss": 5.5,
    "best_val_ppl": 244.69,
    "test_loss": 5.45,
    "test_ppl": 232.76,
}


class FakeStages:
    """Stand-ins for render / execute / theory / report that write small, valid products."""

    def __init__(self, fail: str | None = None, pages: list[list[str]] | None = None) -> None:
        self.fail = fail
        self.pages = pages if pages is not None else good_pdf_pages()
        self.calls: list[tuple[str, Any]] = []

    def _enter(self, stage: str, detail: Any = None) -> None:
        self.calls.append((stage, detail))
        if self.fail == stage:
            raise RuntimeError(f"the fake {stage} stage broke")

    def render(self, config, out_path: Path) -> Path:
        self._enter("render", config.ids)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed_notebook(), out_path)
        return out_path

    def execute(self, nb_path: Path, parameters: dict[str, Any], run_root: Path, **options: Any):
        self._enter("execute", {"parameters": parameters, **options})
        out = run_root / "key123"
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed_notebook(), out / "executed.ipynb")
        (out / "metrics.json").write_text(json.dumps(METRICS))
        return ExecutionResult(out / "executed.ipynb", out / "metrics.json", out, False, 1.5, "key123")

    def theory(self, out_dir: Path, project_root: Path, *, timeout_s: float) -> str:
        self._enter("theory", project_root)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "checks.json").write_text("{}")
        return "all checks passed"

    def report(self, inputs, out_pdf: Path) -> Path:
        self._enter("report", inputs.record)
        out_pdf.parent.mkdir(parents=True, exist_ok=True)
        out_pdf.write_bytes(pdf_bytes(self.pages))
        return out_pdf

    def stages(self) -> Stages:
        return Stages(render=self.render, execute=self.execute, theory=self.theory, report=self.report)


def pdf_naming(names: tuple[str, str]) -> list[list[str]]:
    """A report-like PDF whose cover prints the two names."""
    pages = good_pdf_pages()
    pages[0] = [pages[0][0], f"{names[0]} and {names[1]}"]
    return pages


def write_config(
    folder: Path, ids: tuple[str, str] = (ID1, ID2), hparams: str = "", names=("Alice Levi", "Bob Cohen")
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "submission.toml"
    path.write_text(
        'profile = "quick"\n'
        f'[[students]]\nname = "{names[0]}"\nemail = "a@campus.technion.ac.il"\nid = "{ids[0]}"\n'
        f'[[students]]\nname = "{names[1]}"\nemail = "b@campus.technion.ac.il"\nid = "{ids[1]}"\n'
        f"[hparams]\n{hparams}\n",
        encoding="utf-8",
    )
    return path


def run_build(config: Path, fakes: FakeStages, **kwargs):
    """A build of ``config`` into ``<config folder>/build`` (the repository stays the project root)."""
    lines: list[str] = []
    kwargs.setdefault("build_dir", config.parent / "build")
    result = build(config, stages=fakes.stages(), echo=lines.append, lock_timeout=0.2, **kwargs)
    return result, "\n".join(lines)


def test_a_build_runs_every_stage_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    fakes = FakeStages()
    result, output = run_build(write_config(tmp_path, hparams="epochs = 3"), fakes, force=True)

    assert [stage for stage, _ in fakes.calls] == ["render", "execute", "theory", "report"]
    execute_call = fakes.calls[1][1]
    assert execute_call["force"] is True
    expected_params = {"profile": "quick", "device": "auto", "data_dir": None}
    expected_params |= profile_defaults("quick").replace(epochs=3).to_dict()
    assert execute_call["parameters"] == expected_params
    assert execute_call["cell_timeout"] == CELL_TIMEOUT_S
    assert execute_call["training_timeout"] == TRAINING_TIMEOUT_S["quick"]
    assert fakes.calls[2][1] == REPO  # theory checks run from the project root: the repository

    assert result.zip_path == tmp_path / "build" / "dist" / f"{STEM}.zip"
    assert validate_zip(result.zip_path, strict=True).ok
    assert result.test_ppl == METRICS["test_ppl"] and result.cache_hit is False and result.warnings == []
    assert not any((tmp_path / "build" / "dist" / ".staging").iterdir())

    record = json.loads((tmp_path / "build" / "build.json").read_text())
    assert set(record["build"]["timings"]) == {*STAGE_NAMES, "total"}
    assert record["build"]["cache_hit"] is False and record["build"]["built_at"]
    assert record["execution"]["key"] == "key123"
    assert record["hparams"]["epochs"] == 3 and record["seed"] == 211 and record["profile"] == "quick"
    assert record["data"]["summary"] == METRICS["data"]
    assert record["results"]["test_ppl"] == METRICS["test_ppl"]
    assert record["versions"]["python"] and record["versions"]["torch"]
    assert record["build"]["zip"]["bytes"] == result.size_bytes
    report_record = fakes.calls[3][1]  # the report gets only what the inputs determine
    assert {k: v for k, v in record.items() if k != "build"} == report_record

    for number, stage in enumerate(STAGE_NAMES, start=1):
        assert f"[{number}/{len(STAGE_NAMES)}] {stage} done" in output
    assert "test perplexity 232.76" in output and str(result.zip_path) in output


def test_the_report_gets_no_clock_time_nor_durations(tmp_path: Path) -> None:
    # Two builds of the same inputs must make the same PDF: this build's own time stays in build.json.
    first, second = FakeStages(), FakeStages()
    run_build(write_config(tmp_path), first)
    run_build(write_config(tmp_path), second)
    records = [fakes.calls[-1][1] for fakes in (first, second)]
    assert records[0] == records[1]
    text = json.dumps(records[0])
    assert "built_at" not in text and "timings" not in text and "cache_hit" not in text


@pytest.mark.parametrize("stage", ["render", "execute", "theory", "report"])
def test_a_failing_stage_keeps_the_previous_zip(tmp_path: Path, stage: str) -> None:
    config = write_config(tmp_path)
    good, _ = run_build(config, FakeStages())
    before = good.zip_path.read_bytes()
    record_before = (tmp_path / "build" / "build.json").read_text()

    fakes = FakeStages(fail=stage, pages=good_pdf_pages(extra=["a newer report"]))
    with pytest.raises(BuildFailed) as failed:
        run_build(config, fakes, force=True)  # force: the theory checks would otherwise be reused
    assert failed.value.stage == stage
    assert f"stage '{stage}'" in str(failed.value) and f"the fake {stage} stage broke" in str(failed.value)
    assert good.zip_path.read_bytes() == before
    assert sorted(p.name for p in good.zip_path.parent.glob("*.zip")) == [good.zip_path.name]
    if stage in ("render", "execute", "theory"):  # failed before the record stage: the old record stays
        assert (tmp_path / "build" / "build.json").read_text() == record_before


def test_a_zip_that_fails_validation_never_replaces_the_good_one(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    good, _ = run_build(config, FakeStages())
    before = good.zip_path.read_bytes()
    no_task_5 = [page for page in good_pdf_pages() if not page[0].startswith("Task 5")]
    lines: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        build(
            config,
            stages=FakeStages(pages=no_task_5).stages(),
            echo=lines.append,
            build_dir=tmp_path / "build",
        )
    assert failed.value.stage == "validate"
    assert good.zip_path.read_bytes() == before
    assert (tmp_path / "build" / "dist" / ".staging" / good.zip_path.name).is_file()  # kept for inspection
    assert "Task 5 - Generate Sentences" in "\n".join(lines)  # the checklist was printed


def test_an_invalid_config_stops_before_any_work(tmp_path: Path) -> None:
    fakes = FakeStages()
    with pytest.raises(BuildFailed) as failed:
        run_build(write_config(tmp_path, hparams="nlayers = 6"), fakes)
    assert failed.value.stage == "config"
    assert "nlayers" in str(failed.value) and "[2, 4]" in str(failed.value)
    assert fakes.calls == [] and not (tmp_path / "build").exists()


def test_a_build_running_elsewhere_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fakes = FakeStages()
    with lock_held_elsewhere(tmp_path / "build") as holder:
        with pytest.raises(BuildFailed) as failed:
            run_build(config, fakes)
    assert failed.value.stage == "lock" and f"pid {holder.pid}" in str(failed.value)
    assert fakes.calls == []


def test_the_zip_is_byte_identical_when_built_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first, _ = run_build(write_config(tmp_path / "a"), FakeStages())
    os.utime(tmp_path / "a" / "build" / "report" / "report.pdf", (1e9, 1e9))
    second, _ = run_build(write_config(tmp_path / "b"), FakeStages())
    again, _ = run_build(write_config(tmp_path / "a"), FakeStages())
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes() == again.zip_path.read_bytes()


def test_placeholder_students_build_loudly_marked(tmp_path: Path) -> None:
    config = write_config(tmp_path, ids=("123456789", "987654321"), names=("Student 1", "Student 2"))
    result, output = run_build(config, FakeStages())
    assert result.zip_path.name == "ece046211_hw3_123456789_987654321.zip"
    assert "WARNING" in output and "placeholder" in output
    assert any("student 1" in w for w in result.warnings) and any("123456789" in w for w in result.warnings)
    record = json.loads(result.record_path.read_text())
    assert record["placeholders"] is True and len(record["warnings"]) == 2
    # each validation warning records the rule not met and what was found, not the rule alone (it read
    # "ID 123456789 is a real student ID" for the assignment's example ID)
    found = {w["check"]: w["found"] for w in record["build"]["validation"]["warnings"]}
    assert "123456789 is the assignment's example ID" in found["ID 123456789 is a real student ID"]
    assert not validate_zip(result.zip_path, strict=True).ok


def test_a_zip_for_other_ids_is_removed_after_a_good_build(tmp_path: Path) -> None:
    old, _ = run_build(write_config(tmp_path, ids=("123456789", "987654321")), FakeStages())
    new, output = run_build(write_config(tmp_path), FakeStages())
    assert not old.zip_path.exists() and new.zip_path.exists()
    assert new.removed_stale == [old.zip_path] and "removed stale" in output


def test_theory_checks_are_reused_until_the_hw3_sources_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    run_build(config, FakeStages())
    again = FakeStages()
    _, output = run_build(config, again)
    assert [stage for stage, _ in again.calls] == ["render", "execute", "report"]
    assert "the checks' inputs are unchanged" in output
    monkeypatch.setattr(build_module, "theory_inputs_key", lambda: "0" * 64)  # as if the checks changed
    changed = FakeStages()
    run_build(config, changed)
    assert [stage for stage, _ in changed.calls] == ["render", "execute", "theory", "report"]


def test_a_failed_theory_run_is_not_reused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(BuildFailed):
        run_build(config, FakeStages(fail="theory"))
    retry = FakeStages()
    run_build(config, retry)
    assert "theory" in [stage for stage, _ in retry.calls]


def test_the_record_holds_no_local_paths(tmp_path: Path) -> None:
    result, _ = run_build(write_config(tmp_path), FakeStages())
    text = result.record_path.read_text()
    assert str(tmp_path) not in text
    record = json.loads(text)
    assert record["build"]["zip"]["path"] == f"{STEM}.zip"  # outside the project: the name only


def test_the_record_hashes_the_data_the_run_used_and_names_the_commit(tmp_path: Path) -> None:
    data = tmp_path / "wikitext-2"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"wiki.{split}.tokens").write_text(f" = {split} = \n")

    class RecordedDataDir(FakeStages):
        def execute(self, nb_path, parameters, run_root, **options):
            result = super().execute(nb_path, parameters, run_root, **options)
            return dataclasses.replace(result, data_dir=data)  # the folder the run read

    project = tmp_path / "project"
    config = write_config(project)
    shutil.copytree(REPO / "theory", project / "theory")  # what the pre-flight check looks for
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "submission.toml"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "config"], cwd=project, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()

    result, _ = run_build(config, RecordedDataDir(), project_root=project)
    record = json.loads(result.record_path.read_text())
    train = data / "wiki.train.tokens"
    assert record["data"]["files"]["train"] == {
        "sha256": hashlib.sha256(train.read_bytes()).hexdigest(),
        "bytes": train.stat().st_size,
    }
    assert record["git"] == {"commit": commit, "dirty": False}


def test_a_config_outside_the_repository_keeps_the_repository_as_project_root(tmp_path: Path) -> None:
    # It once wrote build/ next to the config and failed at the report (no theory/ there), after training.
    elsewhere = write_config(tmp_path / "elsewhere")
    assert build_paths() == build_paths(REPO, REPO / "build")
    fakes = FakeStages()
    run_build(elsewhere, fakes, build_dir=tmp_path / "out")  # build_dir given: the repository's stays clean
    theory_root = next(detail for stage, detail in fakes.calls if stage == "theory")
    assert theory_root == REPO and (REPO / "theory" / "q1.tex").is_file()
    assert not (tmp_path / "elsewhere" / "build").exists()


def test_main_builds_into_the_repository_whatever_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def record_call(config_path, **kwargs):
        seen.update(kwargs, paths=build_paths(kwargs.get("project_root"), kwargs.get("build_dir")))

    monkeypatch.setattr(build_module, "build", record_call)
    assert build_module.main(["--config", str(write_config(tmp_path)), "--cell-timeout", "60"]) == 0
    assert seen["paths"].build_dir == REPO / "build" and seen["timeouts"].cell == 60


@pytest.mark.parametrize(
    ("names", "refused"),
    [
        (("Alice \U0001d11e Levi", "Bob Cohen"), "U+1D11E"),
        (("Alice", "\u0b85\u0bae\u0bcd\u0bae\u0bbe"), "U+0B85"),
        (("Alice", "\u05e9\u05b8\u05c2\u05e8\u05b8\u0596\u05d4 Levi"), "U+0596"),  # a cantillation mark
    ],
)
def test_a_name_no_font_can_print_stops_the_build_before_any_work(
    tmp_path: Path, names: tuple[str, str], refused: str
) -> None:
    fakes = FakeStages()
    with pytest.raises(BuildFailed) as failed:
        run_build(write_config(tmp_path, names=names), fakes)
    assert failed.value.stage == "preflight" and refused in str(failed.value)
    assert "students[" in str(failed.value) and fakes.calls == []
    assert "\n" not in str(failed.value.__cause__ or failed.value) and "write it without" in str(failed.value)


def test_a_name_with_vowel_points_passes_the_preflight(tmp_path: Path) -> None:
    names = ("\u05e9\u05b8\u05c2\u05e8\u05b8\u05d4 \u05db\u05bc\u05b9\u05d4\u05b5\u05df", "Bob Cohen")
    fakes = FakeStages()
    run_build(write_config(tmp_path, names=names), fakes)
    assert fakes.calls  # the stages after the pre-flight check ran


def test_missing_theory_sources_stop_the_build_before_any_work(tmp_path: Path) -> None:
    fakes = FakeStages()
    with pytest.raises(BuildFailed) as failed:
        run_build(write_config(tmp_path), fakes, project_root=tmp_path)  # a checkout without theory/
    assert failed.value.stage == "preflight" and "q1.tex" in str(failed.value)
    assert fakes.calls == []


def test_missing_tex_stops_the_build_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    fakes = FakeStages()
    with pytest.raises(BuildFailed) as failed:
        run_build(write_config(tmp_path), fakes)
    assert failed.value.stage == "preflight" and "apt-get install" in str(failed.value)
    assert fakes.calls == []


@pytest.mark.parametrize("name", ["Bob $mith", "50% Bob", "a_b {c} ~d ^e \\f *g* --h & #i [j]"])
def test_names_with_markup_characters_build_and_validate(tmp_path: Path, name: str) -> None:
    names = ("Alice Levi", name)
    fakes = FakeStages(pages=pdf_naming(names))
    result, _ = run_build(write_config(tmp_path, names=(names[0], name.replace("\\", "\\\\"))), fakes)
    assert result.validation.ok, result.validation.format()


def test_what_a_killed_build_left_is_cleared_under_the_lock(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    good, _ = run_build(config, FakeStages())
    build_dir = tmp_path / "build"
    leftovers = [
        build_dir / "dist" / ".staging" / f".{STEM}.zip.x1y2.tmp",
        build_dir / "report" / ".tex-abc123" / "report.tex",
        build_dir / "report" / ".report.pdf.tmp-999",
        build_dir / ".build.json.a1b2.tmp",
        build_dir / "notebook" / ".hw3.ipynb.999.tmp",
        build_dir / "theory" / "q1_checks.tex.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half-written")
    _, output = run_build(config, FakeStages())
    assert not any(path.exists() for path in leftovers)
    assert not (build_dir / "report" / ".tex-abc123").exists()
    assert "leftover" in output


def test_clean_keeps_the_lock_file(tmp_path: Path) -> None:
    run_build(write_config(tmp_path), FakeStages())
    assert clean(tmp_path / "build") is True
    assert [p.name for p in (tmp_path / "build").iterdir()] == [".lock"]


def test_invoke_lists_every_task_with_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True, check=True
    )
    task_lines = [line for line in done.stdout.splitlines() if re.match(r"^  \S", line)]  # not wrapped help
    listed = {line.split()[0]: line for line in task_lines}
    assert {"build", "validate", "test", "clean", "bench", "theory"} <= set(listed)
    assert all(len(line.split()) > 1 for line in listed.values())  # each has help text


# A 1x1 PNG, base64: the image a cell that draws a figure leaves in the notebook.
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _executed_without_training(nb_path: Path, parameters: dict[str, Any], run_root: Path, **options: Any):
    """The rendered notebook marked as executed (counts, an output per printing cell, an image per cell
    that draws a figure) and a metrics.json in the documented schema: the real stages around execution
    run, no training does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hw3build.submission.validate import _prints_at_top_level, _shows_a_figure

    nb = nbformat.read(nb_path, as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip():
            count += 1
            cell.execution_count = count
            if _prints_at_top_level(cell.source):
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="(output)\n")]
            if _shows_a_figure(cell.source):
                cell.outputs.append(nbformat.v4.new_output("display_data", data={"image/png": PNG_1PX}))
    out = run_root / "no-training"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots()
    ax.plot([1, 2], [300.0, 250.0])
    fig.savefig(out / "figures" / "loss_ppl.png")
    plt.close(fig)
    nbformat.write(nb, out / "executed.ipynb")
    history = [
        {"epoch": e, "train_loss": 6.0, "val_loss": 5.6, "val_ppl": 270.4, "lr": 1e-3, "seconds": 60.0}
        for e in (1, 2)
    ]
    hparams = {k: v for k, v in parameters.items() if k not in ("profile", "device", "data_dir")}
    metrics = {
        **METRICS,
        "hparams": hparams,
        "history": history,
        "sentences": ["the game was released in the united states"] * 3,
        "timings": {"train_seconds": 120.0, "total_seconds": 130.0},
        "figures": ["figures/loss_ppl.png"],
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    return ExecutionResult(out / "executed.ipynb", out / "metrics.json", out, False, 0.1, "no-training")


@pytest.mark.tex
@pytest.mark.slow
def test_the_real_notebook_and_report_pass_the_validator(tmp_path: Path) -> None:
    """Real render, theory checks and LaTeX report (only the training is skipped): the report's headings
    and typeset equations must satisfy the validator's rules."""
    lines: list[str] = []
    result = build(
        REPO / "submission.toml",
        profile="quick",
        build_dir=tmp_path / "build",
        project_root=REPO,
        stages=Stages(execute=_executed_without_training),
        echo=lines.append,
    )
    assert result.validation.ok, result.validation.format()
    titles = {c.title for c in result.validation.checks if c.status == "ok"}
    assert "every question and task heading is in the PDF" in titles
    assert "equations rendered (no raw $ or LaTeX commands in the text)" in titles
