"""hw3build.notebook.cache + parameter resolution: the key follows what changes a run, and nothing else."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from hw3build.notebook import cache, inline
from hw3build.notebook.execute import execute_notebook
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
