"""Loading files safely: every ``torch.load`` in the repository refuses pickled code (``weights_only=True``),
and a download or archive member is capped in size before anything hashes or stores it."""

from __future__ import annotations

import ast
from pathlib import Path

from project_files import REPO, project_files


def _torch_loads_without_weights_only(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if not safe:
                lines.append(node.lineno)
    return lines


def test_every_torch_load_is_weights_only() -> None:
    sources = project_files(".py")
    unsafe = {
        str(path.relative_to(REPO)): lines
        for path in sources
        if (lines := _torch_loads_without_weights_only(path))
    }
    assert unsafe == {}, f"torch.load without weights_only=True (it would unpickle code): {unsafe}"


def test_the_check_finds_an_unsafe_load(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import torch\nstate = torch.load('m.pt')\nok = torch.load('m.pt', weights_only=True)\n"
    )
    assert _torch_loads_without_weights_only(sample) == [2]
