"""hw3build.notebook.execute: papermill runs with a real kernel; success is read from the notebook; cache hits skip;
the cell that stopped a run (error, timeout, dead kernel) is the one named; damaged cache entries re-run."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest
from hw3build.failures import find_failure
from hw3build.notebook import runs
from hw3build.notebook.execute import (
    SHIPPED_NAME,
    ExecutionFailed,
    ParameterError,
    execute_notebook,
    explain_miss,
    restitch_markdown,
)
from hw3build.notebook.manifest import MANIFEST_NAME, manifest_problem
from hw3build.notebook.render import KERNELSPEC, LANGUAGE_INFO
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

FAST = {"progress_bar": False, "log_output": False}


def synthetic_notebook(
    path: Path, task2_code: str = "y = x * 2", intro: str = "A tiny notebook.", task2_tags: tuple = ()
) -> Path:
    """Parameters, two tasks, and a last cell that writes metrics.json into out_dir (as the real one does)."""
    nb = new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)})
    parameters = new_code_cell("x = 1\nout_dir = 'outputs'")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [
        new_markdown_cell(f"# Title\n{intro}"),
        parameters,
        new_markdown_cell("### Task 1 - Loading\nLoad things."),
        new_code_cell("import json, os\nprint('x is', x)"),
        new_markdown_cell("### Task 2 - Preparing\n#### A sub-step"),
        new_code_cell(task2_code),
        new_code_cell(
            "os.makedirs(out_dir, exist_ok=True)\n"
            "json.dump({'x': x, 'y': y}, open(os.path.join(out_dir, 'metrics.json'), 'w'))"
        ),
    ]
    if task2_tags:
        nb.cells[5].metadata["tags"] = list(task2_tags)
    nbformat.write(nb, path)
    return path


def test_run_succeeds_then_cache_hit_skips_execution(tmp_path: Path, monkeypatch) -> None:
    nb = synthetic_notebook(tmp_path / "nb.ipynb")
    first = execute_notebook(nb, {"x": 3}, tmp_path / "run", **FAST)
    assert not first.cache_hit
    assert first.out_dir == tmp_path / "run" / first.key
    assert json.loads(first.metrics_path.read_text()) == {"x": 3, "y": 6}
    executed = nbformat.read(first.executed_path, as_version=4)
    assert find_failure(executed) is None
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")
    assert not list((tmp_path / "run").glob(".tmp-*"))  # the temporary folder was renamed

    def must_not_run(*args, **kwargs):
        raise AssertionError("papermill ran on a cache hit")

    monkeypatch.setattr(papermill, "execute_notebook", must_not_run)
    second = execute_notebook(nb, {"x": 3}, tmp_path / "run", **FAST)
    assert second.cache_hit and second.key == first.key and second.executed_path == first.executed_path


def test_cache_hit_carries_the_current_markdown(tmp_path: Path) -> None:
    first = execute_notebook(synthetic_notebook(tmp_path / "a.ipynb"), {"x": 2}, tmp_path / "run", **FAST)
    edited = synthetic_notebook(tmp_path / "b.ipynb", intro="Edited prose, same code.")
    hit = execute_notebook(edited, {"x": 2}, tmp_path / "run", **FAST)
    assert hit.cache_hit and hit.key == first.key
    nb = nbformat.read(hit.executed_path, as_version=4)
    assert "Edited prose, same code." in nb.cells[0].source
    printed = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("import json")]
    assert printed[0].outputs[0]["text"] == "x is 2\n"  # the cached outputs, not a re-run


def test_the_injected_cell_holds_only_what_the_build_overrode(tmp_path: Path) -> None:
    """Papermill's injected cell repeated every parameter, a page of the PDF saying nothing; now it holds
    the values that differ from the parameters cell, and the key is that of all the effective values."""
    nb = synthetic_notebook(tmp_path / "nb.ipynb")
    same = execute_notebook(nb, {"x": 1}, tmp_path / "run", **FAST)
    executed = nbformat.read(same.executed_path, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "out_dir = " in injected[0].source and "x = " not in injected[0].source
    other = execute_notebook(nb, {"x": 4}, tmp_path / "run", **FAST)
    executed = nbformat.read(other.executed_path, as_version=4)
    (injected,) = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "x = 4" in injected.source and other.key != same.key
    assert json.loads(other.metrics_path.read_text()) == {"x": 4, "y": 8}


def test_parameter_or_code_change_is_a_miss(tmp_path: Path) -> None:
    run = tmp_path / "run"
    a = execute_notebook(synthetic_notebook(tmp_path / "a.ipynb"), {"x": 1}, run, **FAST)
    b = execute_notebook(synthetic_notebook(tmp_path / "a.ipynb"), {"x": 5}, run, **FAST)
    c = execute_notebook(
        synthetic_notebook(tmp_path / "c.ipynb", task2_code="y = x * 3"), {"x": 1}, run, **FAST
    )
    assert len({a.key, b.key, c.key}) == 3 and not (b.cache_hit or c.cache_hit)
    assert json.loads(c.metrics_path.read_text()) == {"x": 1, "y": 3}


def test_a_miss_is_explained_against_the_latest_run(tmp_path: Path) -> None:
    captured: list[dict] = []
    execute_notebook(
        synthetic_notebook(tmp_path / "a.ipynb"),
        {"x": 1},
        tmp_path / "run",
        on_key=lambda k, i: captured.append(i),
        **FAST,
    )
    changed = {**captured[0], "parameters": {**captured[0]["parameters"], "x": 9}}
    assert explain_miss(tmp_path / "run", changed) == ["parameter x: 1 -> 9"]
    assert explain_miss(tmp_path / "run", captured[0]) == []


def test_failing_cell_names_task_and_cell_and_keeps_partial_and_good_runs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    good = execute_notebook(synthetic_notebook(tmp_path / "good.ipynb"), {"x": 1}, run, **FAST)
    good_bytes = good.executed_path.read_bytes()
    bad = synthetic_notebook(tmp_path / "bad.ipynb", task2_code="y = x / 0  # divides by zero")
    with pytest.raises(ExecutionFailed) as info:
        execute_notebook(bad, {"x": 1}, run, **FAST)
    message = str(info.value)
    assert "Task 2 - Preparing" in message and "A sub-step" in message
    assert "y = x / 0" in message and "ZeroDivisionError" in message
    partial = info.value.partial_path
    assert partial is not None and partial.parent.name.startswith("failed-")
    partial_nb = nbformat.read(partial, as_version=4)
    assert any(o.get("output_type") == "error" for c in partial_nb.cells for o in c.get("outputs", []))
    assert good.executed_path.read_bytes() == good_bytes  # the previous good run is untouched
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("failed-")) == [good.key]


SLEEPY = "import time\ntime.sleep(60)\ny = 1"
SUICIDE = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\ny = 1"


def _task2_index(nb: nbformat.NotebookNode) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "y = " in c.source)


def test_cell_timeout_names_the_cell_that_ran_too_long(tmp_path: Path) -> None:
    slow = synthetic_notebook(tmp_path / "slow.ipynb", task2_code=SLEEPY)
    with pytest.raises(ExecutionFailed, match="Task 2 - Preparing") as info:
        execute_notebook(slow, {}, tmp_path / "run", cell_timeout=2, **FAST)
    message = str(info.value)
    assert "'import time'" in message and "CellTimeoutError" in message and "limit of 2 s" in message
    assert "--cell-timeout" in message  # the fix
    partial = nbformat.read(info.value.partial_path, as_version=4)
    assert info.value.cell_index == _task2_index(partial)
    assert find_failure(partial).cell_index == info.value.cell_index  # the saved notebook says so too


def test_dead_kernel_names_the_cell_that_was_running(tmp_path: Path) -> None:
    # papermill marks the dying cell "completed": the first cell without a count is the next one, which
    # never ran. The message must name the cell whose kernel died, and its task.
    nb = synthetic_notebook(tmp_path / "dies.ipynb", task2_code=SUICIDE)
    with pytest.raises(ExecutionFailed) as info:
        execute_notebook(nb, {}, tmp_path / "run", **FAST)
    message = str(info.value)
    assert "'import os, signal'" in message and "DeadKernelError" in message, message
    assert "Task 2 - Preparing" in message and "out of memory" in message
    partial = nbformat.read(info.value.partial_path, as_version=4)
    assert info.value.cell_index == _task2_index(partial)
    assert info.value.task.startswith("Task 2 - Preparing")


def test_training_cells_get_the_long_time_limit(tmp_path: Path) -> None:
    nap = "import time\ntime.sleep(3)\ny = 1"
    tagged = synthetic_notebook(tmp_path / "tagged.ipynb", task2_code=nap, task2_tags=("training",))
    result = execute_notebook(tagged, {}, tmp_path / "run", cell_timeout=1, training_timeout=60, **FAST)
    assert not result.cache_hit
    untagged = synthetic_notebook(tmp_path / "untagged.ipynb", task2_code=nap + "  # untagged")
    with pytest.raises(ExecutionFailed, match="CellTimeoutError"):
        execute_notebook(untagged, {}, tmp_path / "run", cell_timeout=1, training_timeout=60, **FAST)


def test_missing_metrics_is_a_failure(tmp_path: Path) -> None:
    nb = synthetic_notebook(tmp_path / "nb.ipynb")
    notebook = nbformat.read(nb, as_version=4)
    notebook.cells = notebook.cells[:-1]  # never writes metrics.json
    nbformat.write(notebook, nb)
    with pytest.raises(ExecutionFailed, match="metrics.json"):
        execute_notebook(nb, {}, tmp_path / "run", **FAST)


def test_unknown_parameter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="unknown notebook parameter.*'z'"):
        execute_notebook(synthetic_notebook(tmp_path / "nb.ipynb"), {"z": 1}, tmp_path / "run", **FAST)


def test_find_failure_reads_unrun_and_interrupted_cells(tmp_path: Path) -> None:
    nb = nbformat.read(synthetic_notebook(tmp_path / "nb.ipynb"), as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = number + 1
    assert find_failure(nb) is None
    nb.cells[5].execution_count = None  # a cell that never ran, with no papermill record of the run
    failure = find_failure(nb)
    assert failure is not None and failure.cell_index == 5 and failure.task.startswith("Task 2 - Preparing")
    nb.cells[5].execution_count = 9
    nb.cells[3].metadata["papermill"] = {"status": "running"}
    assert find_failure(nb).cell_index == 3


def test_find_failure_after_a_dead_kernel_names_the_cell_that_was_running(tmp_path: Path) -> None:
    # As papermill leaves it when the kernel dies in cell 5: cell 5 "completed" with a count, cell 6 never
    # started. Without the engine's marker, the cell named is the last one that started, not cell 6.
    nb = nbformat.read(synthetic_notebook(tmp_path / "nb.ipynb"), as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        started = "2024-01-01T00:00:00" if cell is not nb.cells[6] else None
        cell.metadata["papermill"] = {"status": "completed" if started else "pending", "start_time": started}
        cell.execution_count = number + 1 if started else None
    failure = find_failure(nb)
    assert failure is not None and failure.cell_index == 5 and "stopped during this cell" in failure.reason
    nb.cells[5].outputs = [
        new_output("error", ename="DeadKernelError", evalue="the kernel died", traceback=[])
    ]
    assert find_failure(nb).reason == "DeadKernelError: the kernel died"


def test_restitch_refuses_mismatched_code(tmp_path: Path) -> None:
    a = nbformat.read(synthetic_notebook(tmp_path / "a.ipynb"), as_version=4)
    b = nbformat.read(synthetic_notebook(tmp_path / "b.ipynb", task2_code="y = 0"), as_version=4)
    with pytest.raises(ValueError, match="differs"):
        restitch_markdown(a, b)


@pytest.mark.e2e
@pytest.mark.slow
def test_real_notebook_runs_with_the_quick_profile(real_data_dir: Path, tmp_path: Path) -> None:
    from hw3build.notebook.render import render_notebook
    from hw3build.submission.config import parse_config

    students = [
        {"name": "Dana Levi", "email": "dana.levi@campus.technion.ac.il", "id": "000000018"},
        {"name": "Noam Cohen", "email": "noam.c@campus.technion.ac.il", "id": "000000026"},
    ]
    cfg = parse_config({"profile": "quick", "students": students, "data_dir": str(real_data_dir)})
    nb_path = render_notebook(cfg, tmp_path / "hw3.ipynb")
    result = execute_notebook(nb_path, cfg.run_parameters(), tmp_path / "run", data_dir=real_data_dir, **FAST)

    executed = nbformat.read(result.executed_path, as_version=4)
    assert find_failure(executed) is None
    counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
    assert all(counts) and counts == sorted(counts)
    streams = "".join(
        o.get("text", "")
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    assert "█" not in streams and "\r" not in streams  # no progress bars in the saved notebook
    for expected in ("train_data.shape = (102499, 20)", "ntokens = 28782", "TransformerModel(", "test ppl"):
        assert expected in streams
    assert any("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))

    metrics = json.loads(result.metrics_path.read_text())
    hp = cfg.hparams
    assert metrics["profile"] == "quick" and metrics["hparams"] == hp.to_dict()
    assert metrics["data"]["vocab_size"] == 28782 and metrics["data"]["train"]["n_tokens"] == 2049990
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, hp.epochs + 1))
    assert 1 <= metrics["best_epoch"] <= hp.epochs
    assert 1.0 < metrics["test_ppl"] < 28782  # better than a uniform guess over the vocabulary
    assert len(metrics["sentences"]) == 3 and all(len(s.split(" ")) == 20 for s in metrics["sentences"])
    assert metrics["figures"] == ["figures/loss_ppl.png"]
    assert (result.out_dir / "figures" / "loss_ppl.png").stat().st_size > 10_000
    assert set(metrics["timings"]) == {"train_seconds", "total_seconds"}


def test_restitch_keeps_the_executed_parameters_cell(tmp_path: Path) -> None:
    # A build with --data-dir and one without share a run (data_dir is not in the key, the data hashes are):
    # the parameters cell, holding defaults only, may differ and the executed one is kept.
    executed = nbformat.read(synthetic_notebook(tmp_path / "a.ipynb"), as_version=4)
    rendered = nbformat.read(synthetic_notebook(tmp_path / "b.ipynb"), as_version=4)
    params = next(c for c in rendered.cells if "parameters" in c.metadata.get("tags", []))
    params.source += "\n# rendered with other defaults"
    result = restitch_markdown(executed, rendered)
    kept = next(c for c in result.cells if "parameters" in c.metadata.get("tags", []))
    assert "other defaults" not in kept.source


# ------------------------------------------------------------------------------ cache entry integrity
def test_a_truncated_cache_entry_is_reported_and_run_again(tmp_path: Path, caplog) -> None:
    nb = synthetic_notebook(tmp_path / "nb.ipynb")
    first = execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST)
    assert (first.out_dir / MANIFEST_NAME).is_file() and manifest_problem(first.out_dir) is None
    metrics = first.out_dir / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[:5])  # as after a crash mid-write, or a full disk
    with caplog.at_level("WARNING", logger="hw3build.notebook.execute"):
        again = execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST)
    assert not again.cache_hit and again.key == first.key
    assert json.loads(again.metrics_path.read_text()) == {"x": 2, "y": 4}
    damaged = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1 and "metrics.json" in damaged[0] and "\n" not in damaged[0]


def test_an_edited_or_unfinished_cache_entry_is_never_trusted(tmp_path: Path) -> None:
    nb = synthetic_notebook(tmp_path / "nb.ipynb")
    first = execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST)
    executed = first.out_dir / "executed.ipynb"
    executed.write_text(executed.read_text().replace("x is 2", "x is 7"))  # same size, other bytes
    assert "executed.ipynb" in manifest_problem(first.out_dir)
    assert not execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST).cache_hit
    (first.out_dir / MANIFEST_NAME).unlink()  # a run that never wrote its manifest
    assert not execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST).cache_hit
    assert execute_notebook(nb, {"x": 2}, tmp_path / "run", **FAST).cache_hit


def test_the_shipped_notebook_is_rewritten_beside_an_untouched_run(tmp_path: Path) -> None:
    first = execute_notebook(synthetic_notebook(tmp_path / "a.ipynb"), {"x": 2}, tmp_path / "run", **FAST)
    assert first.executed_path == first.out_dir / SHIPPED_NAME
    edited = synthetic_notebook(tmp_path / "b.ipynb", intro="New prose.")
    hit = execute_notebook(edited, {"x": 2}, tmp_path / "run", **FAST)
    assert hit.cache_hit and manifest_problem(hit.out_dir) is None  # the entry itself never changes
    assert "New prose." in nbformat.read(hit.executed_path, as_version=4).cells[0].source
    for path in (hit.executed_path, hit.out_dir / "executed.ipynb"):
        text = path.read_text()
        assert str(tmp_path) not in text and "input_path" not in text and "output_path" not in text


# ---------------------------------------------------------------------------------- killed builds
def _finished_run(tmp_path: Path) -> tuple[Path, str]:
    result = execute_notebook(synthetic_notebook(tmp_path / "nb.ipynb"), {"x": 2}, tmp_path / "run", **FAST)
    return result.out_dir.parent, result.key


def test_a_finished_run_caught_between_its_two_renames_is_recovered(tmp_path: Path) -> None:
    run_root, key = _finished_run(tmp_path)
    # publish() moved the old run away and was killed before moving the new one in
    (run_root / key).rename(run_root / f".tmp-{key}-4242")
    (run_root / f".old-{key}-4242").mkdir()
    (run_root / f".old-{key}-4242" / "executed.ipynb").write_text("{}")
    notes = runs.recover(run_root)
    assert sorted(p.name for p in run_root.iterdir()) == [key]
    assert runs.run_problem(run_root / key) is None and any("recovered" in n for n in notes)
    hit = execute_notebook(synthetic_notebook(tmp_path / "nb.ipynb"), {"x": 2}, run_root, **FAST)
    assert hit.cache_hit


def test_the_old_run_is_put_back_when_the_new_one_never_finished(tmp_path: Path) -> None:
    run_root, key = _finished_run(tmp_path)
    (run_root / key).rename(run_root / f".old-{key}-77")
    (run_root / f".tmp-{key}-77").mkdir()  # a run killed while executing: no manifest
    (run_root / f".tmp-{key}-77" / "executed.ipynb").write_text("{")
    runs.recover(run_root)
    assert sorted(p.name for p in run_root.iterdir()) == [key] and runs.run_problem(run_root / key) is None


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    run_root, key = _finished_run(tmp_path)
    (run_root / key / ".submission.ipynb.abc123.tmp").write_text("half")
    (run_root / ".tmp-0123456789abcdef-99").mkdir()
    runs.recover(run_root)
    assert sorted(p.name for p in run_root.iterdir()) == [key]
    assert not list((run_root / key).glob(".*.tmp"))


def test_only_papermills_cell_markers_are_hidden_its_warnings_show() -> None:
    # the parameters cell is one assignment a line, so papermill reads every name: a warning of an
    # unknown parameter would now be true, and is shown
    import logging

    from hw3build.notebook.execute import _QuietCellMarkers

    def shown(message: str) -> bool:
        record = logging.LogRecord("papermill", logging.WARNING, __file__, 1, message, None, None)
        return _QuietCellMarkers().filter(record)

    assert shown("Passed unknown parameter: log_interval")
    assert not shown("Executing Cell 12---------------------------------------")
    assert shown("cache hit: build/run/abc")
