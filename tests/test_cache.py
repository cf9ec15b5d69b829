"""hw3build.notebook.cache + parameter resolution: the key follows what changes a run, and nothing else."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import nbformat
import pytest
from hw3build import failpoints
from hw3build.notebook import cache, inline, runs
from hw3build.notebook.execute import execute_notebook
from hw3build.notebook.manifest import MANIFEST_NAME, write_manifest
from hw3build.notebook.parameters import ParameterError, resolve_parameters
from hw3build.notebook.render import render_notebook
from hw3build.submission.config import parse_config

STUDENTS = [
    {"name": "Dana Levi", "email": "dana.levi@campus.technion.ac.il", "id": "000000018"},
    {"name": "Noam Cohen", "email": "noam.c@campus.technion.ac.il", "id": "000000026"},
]
ENV = {"python": "3.11.7", "implementation": "cpython", "torch": "2.13.0", "device_kind": "cpu: x86_64"}
DATA = {name: "0" * 64 for name in cache.DATA_FILES}


def config(students=STUDENTS, **hparams):
    return parse_config({"profile": "quick", "students": students, "hparams": hparams})


def other_lr(lr: float) -> float:
    """A different learning rate inside the assignment's range [5e-3, 5.0]."""
    return 0.01 if lr != 0.01 else 0.02


def key_of(nb: nbformat.NotebookNode, cfg, data=DATA, env=ENV, **overrides) -> str:
    params = resolve_parameters(nb, {**cfg.run_parameters(), **overrides})
    return cache.cache_key(cache.key_inputs(nb, params, data, env))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> nbformat.NotebookNode:
    return nbformat.read(render_notebook(config(), tmp_path_factory.mktemp("nb") / "hw3.ipynb"), as_version=4)


def test_key_is_stable(rendered) -> None:
    assert key_of(rendered, config()) == key_of(copy.deepcopy(rendered), config())


def test_hyperparameter_changes_the_key(rendered) -> None:
    hp = config().hparams
    base = key_of(rendered, config())
    assert key_of(rendered, config(), lr=other_lr(hp.lr)) != base
    assert key_of(rendered, config(), dropout=0.0 if hp.dropout else 0.1) != base
    assert key_of(rendered, config(), epochs=hp.epochs + 1) != base


def test_equal_values_of_other_python_types_give_the_same_key(rendered) -> None:
    # papermill's `-p dropout 0` gives the int 0: normalised through HParams, it hashes like 0.0
    assert key_of(rendered, config(), dropout=0) == key_of(rendered, config(), dropout=0.0)


def test_package_code_change_changes_the_key(tmp_path: Path, monkeypatch) -> None:
    base = nbformat.read(render_notebook(config(), tmp_path / "a.ipynb"), as_version=4)
    original = inline.object_source

    def edited(ref: str) -> str:
        source = original(ref)
        return (
            source.replace("return data, target", "return data.clone(), target")
            if ref == "hw3.data:get_batch"
            else source
        )

    monkeypatch.setattr(inline, "object_source", edited)
    inline.definition.cache_clear()
    try:
        changed = nbformat.read(render_notebook(config(), tmp_path / "b.ipynb"), as_version=4)
    finally:
        inline.definition.cache_clear()
    assert any("data.clone()" in c.source for c in changed.cells)
    assert key_of(changed, config()) != key_of(base, config())


def test_markdown_and_student_changes_keep_the_key(tmp_path: Path) -> None:
    other = [{**STUDENTS[0], "name": "Someone Else"}, STUDENTS[1]]
    a = nbformat.read(render_notebook(config(), tmp_path / "a.ipynb"), as_version=4)
    b = nbformat.read(render_notebook(config(other), tmp_path / "b.ipynb"), as_version=4)
    assert [c.source for c in a.cells if c.cell_type == "markdown"] != [
        c.source for c in b.cells if c.cell_type == "markdown"
    ]
    assert key_of(a, config()) == key_of(b, config(other))


def test_theory_prose_is_not_an_input(rendered, tmp_path: Path, monkeypatch) -> None:
    # the key is computed from the notebook, the parameters, the data and the environment only:
    # run it from a directory whose theory/ differs and the key stays.
    monkeypatch.chdir(tmp_path)
    before = key_of(rendered, config())
    (tmp_path / "theory").mkdir()
    (tmp_path / "theory" / "q1.tex").write_text("An edited answer.\n")
    assert key_of(rendered, config()) == before


def test_data_environment_and_device_change_the_key(rendered) -> None:
    base = key_of(rendered, config())
    assert key_of(rendered, config(), data={**DATA, "wiki.test.tokens": "1" * 64}) != base
    assert key_of(rendered, config(), env={**ENV, "torch": "2.14.0"}) != base
    assert key_of(rendered, config(), env={**ENV, "device_kind": "cuda: NVIDIA H100"}) != base


def test_locations_are_not_in_the_key(rendered) -> None:
    assert key_of(rendered, config(), data_dir="/somewhere") == key_of(
        rendered, config(), data_dir="/elsewhere"
    )


def test_unknown_or_invalid_parameter_is_refused_before_running(rendered, tmp_path: Path) -> None:
    path = tmp_path / "hw3.ipynb"
    nbformat.write(rendered, path)
    with pytest.raises(ParameterError, match="unknown notebook parameter.*learning_rate"):
        execute_notebook(path, {"learning_rate": 0.1}, tmp_path / "run")
    with pytest.raises(ParameterError, match="lr"):
        execute_notebook(path, {"lr": 50.0}, tmp_path / "run")
    with pytest.raises(ParameterError, match="out_dir"):
        execute_notebook(path, {"out_dir": "x"}, tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_explain_difference_names_the_changed_inputs(rendered) -> None:
    a = cache.key_inputs(rendered, resolve_parameters(rendered, config().run_parameters()), DATA, ENV)
    lr = config().hparams.lr
    b = cache.key_inputs(
        rendered,
        resolve_parameters(rendered, {**config().run_parameters(), "lr": other_lr(lr)}),
        DATA,
        ENV,
    )
    assert cache.explain_difference(a, b) == [f"parameter lr: {lr!r} -> {other_lr(lr)!r}"]


# ------------------------------------------------------------------- the environment the kernel runs
def _kernelspec(folder: Path, name: str, interpreter: Path) -> None:
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    argv = [str(interpreter), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


def test_the_fingerprint_is_measured_by_the_kernels_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user-level kernelspec whose Python has another torch: the key must see that torch, not ours.
    other = tmp_path / "other-python"
    other.write_text(
        "#!/bin/sh\n"
        'echo \'{"python": "3.9.1", "implementation": "cpython", "torch": "1.13.1", '
        '"device_kind": "cpu: x86_64", "bf16": false}\'\n'
    )
    other.chmod(0o755)
    _kernelspec(tmp_path, "other", other)
    _kernelspec(tmp_path, "ours", Path(sys.executable))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    import torch

    ours = cache.environment_fingerprint("cpu", "ours")
    assert ours["torch"] == torch.__version__ and isinstance(ours["bf16"], bool)
    theirs = cache.environment_fingerprint("cpu", "other")
    assert theirs["torch"] == "1.13.1"
    assert cache.explain_difference({"environment": ours}, {"environment": theirs})


def test_a_kernel_that_cannot_run_the_notebook_is_one_line(tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    _kernelspec(tmp_path, "broken", broken)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(cache.KernelEnvironmentError, match="No module named torch") as caught:
        cache.environment_fingerprint("cpu", "broken")
    assert "\n" not in str(caught.value)


# -------------------------------------------------------------------------- the run the cache trusts
KEY = "0123456789abcdef"


def finished_run(run_root: Path, key: str = KEY) -> Path:
    """A run folder as execute_notebook leaves it: executed notebook, metrics, manifest (written last)."""
    folder = run_root / key
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", execution_count=1)])
    nbformat.write(nb, folder / runs.EXECUTED_NAME)
    (folder / runs.METRICS_NAME).write_text('{"test_ppl": 100.0}')
    write_manifest(folder, key)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(edit(manifest)))


def test_a_finished_run_is_trusted(tmp_path: Path) -> None:
    assert runs.run_problem(finished_run(tmp_path)) is None


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: {**m, "key": "fedcba9876543210"}, "is for the run 'fedcba9876543210'"),
        (lambda m: {**m, "files": {k: v for k, v in m["files"].items() if k != "metrics.json"}},
         "does not list metrics.json"),
        (lambda m: {**m, "files": {k: v for k, v in m["files"].items() if k != "executed.ipynb"}},
         "does not list executed.ipynb"),
        (lambda m: [m], "is not a schema-2 manifest"),
        (lambda m: {**m, "files": [1, 2]}, "has no key or no files"),
        (lambda m: {**m, "files": {**m["files"], "metrics.json": "abc"}}, "malformed entry"),
        (lambda m: {k: v for k, v in m.items() if k != "key"}, "has no key"),
    ],
)  # fmt: skip
def test_a_manifest_not_tied_to_its_run_or_malformed_is_one_line(tmp_path: Path, edit, problem: str) -> None:
    folder = finished_run(tmp_path)
    _edit_manifest(folder, edit)
    found = runs.run_problem(folder)
    assert found is not None and problem in found and "\n" not in found


@pytest.mark.parametrize("entry", ["../outside.txt", "/etc/hostname", "./metrics.json", "a\\..\\b", ""])
def test_a_manifest_entry_outside_the_run_folder_is_never_followed(tmp_path: Path, entry: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of any run")
    folder = finished_run(tmp_path / "run")
    target = outside if entry == "../outside.txt" else None
    sha = cache.sha256_file(target) if target else "0" * 64
    size = target.stat().st_size if target else 0
    _edit_manifest(folder, lambda m: {**m, "files": {**m["files"], entry: {"sha256": sha, "bytes": size}}})
    found = runs.run_problem(folder)
    assert found is not None and "not inside the run folder" in found


def test_a_symlinked_run_or_file_is_refused_and_removed_without_following(tmp_path: Path) -> None:
    elsewhere = finished_run(tmp_path / "elsewhere")
    run_root = tmp_path / "run"
    run_root.mkdir()
    (run_root / KEY).symlink_to(elsewhere, target_is_directory=True)
    assert "symbolic link" in runs.run_problem(run_root / KEY)
    (run_root / f".tmp-{KEY}-99").symlink_to(elsewhere, target_is_directory=True)
    runs.recover(run_root)
    assert not (run_root / f".tmp-{KEY}-99").is_symlink()
    new = finished_run(tmp_path / "new")
    runs.publish(new, run_root / KEY)  # the link is replaced, what it pointed to is left alone
    assert not (run_root / KEY).is_symlink() and runs.run_problem(run_root / KEY) is None
    assert runs.run_problem(elsewhere) is None and sorted(run_root.iterdir()) == [run_root / KEY]
    inner = finished_run(tmp_path / "inner")
    (inner / "metrics.json").unlink()
    (inner / "metrics.json").symlink_to(elsewhere / "metrics.json")
    assert "symbolic link" in runs.run_problem(inner)


def test_publish_puts_the_old_run_back_when_the_new_one_cannot_move_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_root = tmp_path / "run"
    old = finished_run(run_root)
    before = (old / runs.METRICS_NAME).read_bytes()
    new = finished_run(tmp_path / "new")
    monkeypatch.setenv(failpoints.ENV_NAME, "execute:publish")
    monkeypatch.setenv(failpoints.ENV_ACTION, failpoints.ENOSPC)
    with pytest.raises(OSError, match="No space left on device"):
        runs.publish(new, run_root / KEY)
    assert sorted(p.name for p in run_root.iterdir()) == [KEY]
    assert (run_root / KEY / runs.METRICS_NAME).read_bytes() == before and new.is_dir()
