"""The shipped notebook on its own, as a grader's Jupyter or Colab runs it: a temporary folder, none of our
packages, no portalocker, no WikiText-2 cache yet, so it must download the data (here from a loopback
mirror serving the published zip) and run top to bottom."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest
from builds import Project
from nbclient import NotebookClient

FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")


def _release_zip(data_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in FILES:
            archive.write(data_dir / name, f"wikitext-2/{name}")
    return buffer.getvalue()


@pytest.mark.e2e
@pytest.mark.reliability("notebook-alone")
def test_the_shipped_notebook_runs_alone_without_portalocker(
    primed: Project, http_server, tmp_path: Path
) -> None:
    with zipfile.ZipFile(primed.zip) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".ipynb"))
        notebook = nbformat.reads(archive.read(name).decode("utf-8"), as_version=4)
    folder = tmp_path / "grader"
    folder.mkdir()
    blocker = tmp_path / "no-portalocker"
    (blocker / "portalocker").mkdir(parents=True)
    (blocker / "portalocker" / "__init__.py").write_text(
        "raise ImportError('portalocker is not installed')\n"
    )
    url = http_server.add("/wikitext-2-v1.zip", _release_zip(primed.data_dir))
    cache = tmp_path / "fresh-home" / "cache"  # does not exist yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW3_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(blocker), HW3_CACHE_DIR=str(cache), HW3_WIKITEXT_URLS=url, MPLBACKEND="Agg")

    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env=env, cwd=str(folder))

    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    assert all(c.execution_count for c in notebook.cells if c.cell_type == "code" and c.source.strip())
    assert http_server.hits == ["/wikitext-2-v1.zip"]  # it downloaded the data itself
    assert sorted(p.name for p in (cache / "wikitext-2").iterdir()) == sorted(FILES)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_ppl"] > 1
