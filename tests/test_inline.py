"""hw3build.notebook.inline: package source copied into notebook cells, with what it needs and nothing undefined."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hw3build.notebook import inline
from hw3build.notebook.inline import (
    InlineError,
    Inliner,
    NotSelfContained,
    check_self_contained,
    object_source,
)


def test_object_source_is_the_package_source() -> None:
    source = object_source("hw3.data:get_batch")
    assert source.startswith("def get_batch(source: Tensor, i: int, bptt: int)")
    assert "target = source[i + 1 : i + 1 + seq_len].reshape(-1)" in source


def test_constant_source_comes_from_the_module() -> None:
    assert object_source("hw3.hparams:OPTIMIZERS") == 'OPTIMIZERS = ("SGD", "Adam", "RAdam")\n'


def test_dependencies_come_first_and_once() -> None:
    inliner = Inliner()
    first = inliner.code("hw3.data:build_vocab")
    # build_vocab uses build_vocab_from_iterator (hw3.vocab), which returns a Vocab: all before build_vocab
    assert (
        first.index("class Vocab")
        < first.index("def build_vocab_from_iterator")
        < first.index("def build_vocab(")
    )
    again = inliner.code(["hw3.vocab:Vocab", "hw3.data:build_vocab"])
    assert again == ""  # already handed out in an earlier cell
    assert inliner.emitted.count("hw3.vocab:Vocab") == 1


def test_imports_are_the_used_module_imports_only() -> None:
    inliner = Inliner()
    inliner.code("hw3.data:batchify")
    assert inliner.imports() == ["import torch", "from torch import Tensor"]
    assert inliner.imports(already_bound={"Tensor"}) == ["import torch"]
    inliner.code("hw3.data:read_lines")
    assert "from collections.abc import Iterator" in inliner.imports()
    assert not [line for line in inliner.imports() if "hw3" in line or "__future__" in line]


def test_inlined_code_runs_standalone() -> None:
    inliner = Inliner()
    code = inliner.code(["hw3.data:batchify", "hw3.data:get_batch", "hw3.data:build_vocab"])
    program = "from __future__ import annotations\n" + "\n".join(inliner.imports()) + "\n\n" + code
    namespace: dict = {"__name__": "__main__"}
    exec(compile(program, "<notebook>", "exec"), namespace)  # no hw3 import anywhere in it
    batches = namespace["batchify"](torch.arange(10), 2)
    assert batches.tolist() == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    data, target = namespace["get_batch"](batches, 0, 2)
    assert data.tolist() == [[0, 5], [1, 6]] and target.tolist() == [1, 6, 2, 7]
    vocab = namespace["build_vocab"](["b a b", "c b"])
    assert vocab.get_itos() == ["<unk>", "b", "a", "c"] and vocab["zzz"] == 0


def test_undefined_free_name_is_caught() -> None:
    cells = ["import torch", "def f(x):\n    return torch.relu(x) + undefined_helper(x)"]
    with pytest.raises(NotSelfContained, match="undefined_helper"):
        check_self_contained(cells)


def test_name_defined_only_in_a_later_cell_is_caught() -> None:
    with pytest.raises(NotSelfContained, match=r"code cell 0 .*'later'"):
        check_self_contained(["print(later)", "later = 1"])


def test_names_in_classes_annotations_and_magics_are_checked() -> None:
    check_self_contained(
        [
            "%pip install pooch\nimport math",
            "class A:\n    x: int = 1\n    def f(self):\n        return math.pi",
        ]
    )
    with pytest.raises(NotSelfContained, match="Missing"):
        check_self_contained(["def f(a: Missing) -> int:\n    return 1"])
    with pytest.raises(NotSelfContained, match="Gone"):
        check_self_contained(["class A:\n    b = Gone"])


def _fake_module(tmp_path: Path, name: str, body: str) -> str:
    """A throw-away hw3.<name> module (file-backed, so inspect can read its source)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    module_name = f"hw3.{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module_name


def test_package_code_using_a_name_its_module_lacks_is_refused(tmp_path: Path) -> None:
    module = _fake_module(
        tmp_path,
        "_fake_undefined",
        """
        import math

        def ok(x):
            return math.sqrt(x)

        def broken(x):
            return ok(x) + not_defined_anywhere
        """,
    )
    try:
        assert "def ok" in Inliner().code(f"{module}:ok")
        with pytest.raises(InlineError, match="not_defined_anywhere"):
            Inliner().code(f"{module}:broken")
    finally:
        del sys.modules[module]


def test_relative_import_is_refused(tmp_path: Path) -> None:
    module = _fake_module(tmp_path, "_fake_relative", "import math\n\ndef f():\n    return math.pi\n")
    (tmp_path / "_fake_relative.py").write_text("from . import data\n\ndef f():\n    return data\n")
    inline._module_tree.cache_clear()
    try:
        with pytest.raises(InlineError, match="relative import"):
            Inliner().code(f"{module}:f")
    finally:
        del sys.modules[module]
        inline._module_tree.cache_clear()
        inline._index.cache_clear()


def test_only_hw3_objects_can_be_inlined() -> None:
    with pytest.raises(InlineError):
        Inliner().code("os.path:join")
    with pytest.raises(InlineError, match="no top-level definition"):
        Inliner().code("hw3.data:no_such_function")


def test_a_function_body_may_call_a_name_a_later_cell_defines() -> None:
    check_self_contained(["def run():\n    return later()", "def later():\n    return 1", "run()"])
    with pytest.raises(NotSelfContained, match="later"):  # no cell defines it
        check_self_contained(["def run():\n    return later()", "run()"])
    for runs_now in ("x = later", "class A:\n    b = later", "y = [later for _ in range(2)]"):
        with pytest.raises(NotSelfContained, match="later"):  # evaluated when the cell runs
            check_self_contained([runs_now, "later = 1"])


def test_deferred_definitions_are_left_to_the_cell_that_inlines_them() -> None:
    inliner = Inliner()
    inliner.defer("hw3.data:get_batch")
    fast = inliner.code("hw3.train:train")
    assert "def train(" in fast and "def get_batch(" not in fast  # it calls get_batch from its body
    with pytest.raises(InlineError, match="hw3.data:get_batch"):
        inliner.check_deferred()
    later = inliner.code("hw3.data:get_batch")  # the task's cell shows it
    assert "def get_batch(" in later
    inliner.check_deferred()
    check_self_contained(["\n".join(inliner.imports()), fast, later])
