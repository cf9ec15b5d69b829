"""The cache key of a notebook run: a hash of everything that can change what the run computes.

Inputs, and why each is (or is not) part of the key:
  - the source of every code cell except the ``parameters`` cell, in order: the inlined package code and
    the template's glue. Markdown is *not* hashed: it cannot change a result, and a cache hit re-stitches
    the current markdown (student names, prose) into the cached executed notebook (see ``execute``);
  - the typed, effective parameter dict (defaults of the ``parameters`` cell overridden by the caller,
    hyper-parameters normalised by ``HParams``), without ``out_dir`` and ``data_dir`` (where files go or
    come from does not change them; the data's content is hashed instead);
  - the data: sha256 of the three WikiText-2 files;
  - the environment, measured by the interpreter of the kernel the notebook runs in (a user-level
    kernelspec may name another Python, with another torch): Python and torch versions, device kind
    (``cpu`` + machine, or ``cuda`` + GPU name) and whether it computes in bf16 (``precision = "auto"``
    trains in bf16 exactly when it does, which changes every number).
Theory files, report templates and anything outside the notebook are never read, so editing them keeps
the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import nbformat
from hw3.download import sha256_file

from hw3build.errors import BuildError
from hw3build.notebook.schema import INJECTED_PARAMETERS_TAG, LOCATION_PARAMETERS, PARAMETERS_TAG, cell_tags

KEY_LENGTH = 16  # hex digits of sha256 kept in the run folder's name
DATA_FILES = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")


def code_sources(nb: nbformat.NotebookNode) -> list[str]:
    """The code cells that define the computation: every code cell but the ``parameters`` cell and
    papermill's ``injected-parameters`` cell (their values are hashed as the typed parameter dict)."""
    sources = []
    for cell in nb.cells:
        tags = cell_tags(cell)
        if cell.cell_type == "code" and PARAMETERS_TAG not in tags and INJECTED_PARAMETERS_TAG not in tags:
            sources.append(cell.source)
    return sources


def data_file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of each WikiText-2 file in ``folder`` (a missing file is an error: the run would fail)."""
    folder = Path(folder)
    missing = [name for name in DATA_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: not a WikiText-2 folder")
    return {name: sha256_file(folder / name) for name in DATA_FILES}


# Run by the kernel's interpreter: the same decisions the notebook makes (hw3.train.precision_choice,
# the notebook's device choice), with nothing of this package imported.
FINGERPRINT_SCRIPT = r"""
import json, platform, sys
import torch
device = sys.argv[1]
use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
if use_cuda and torch.cuda.is_available():
    kind = "cuda: " + torch.cuda.get_device_name(0)
    bf16 = bool(torch.cuda.is_bf16_supported())
elif use_cuda:
    kind, bf16 = "cuda: unavailable", False
else:
    kind = "cpu: " + platform.machine()
    try:
        bf16 = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        bf16 = False
print(json.dumps({
    "python": platform.python_version(),
    "implementation": sys.implementation.name,
    "torch": torch.__version__,
    "device_kind": kind,
    "bf16": bf16,
}))
"""
FINGERPRINT_TIMEOUT_S = 300


class KernelEnvironmentError(BuildError, RuntimeError):
    """The kernel's interpreter could not say what it runs (no torch, or it does not start)."""


def kernel_command(kernel_name: str) -> tuple[list[str], dict[str, str]]:
    """The interpreter command of the kernelspec ``kernel_name`` (its argv before ``-m``) and its env."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    argv = list(spec.argv)
    command = argv[: argv.index("-m")] if "-m" in argv else argv[:1]
    return command, dict(spec.env or {})


def environment_fingerprint(device: str = "auto", kernel_name: str = "python3") -> dict[str, Any]:
    """What the notebook's kernel runs: measured by the kernel's own interpreter (see the module doc)."""
    command, spec_env = kernel_command(kernel_name)
    env = {**os.environ, **spec_env}
    try:
        done = subprocess.run(
            [*command, "-c", FINGERPRINT_SCRIPT, device],
            capture_output=True, text=True, env=env, timeout=FINGERPRINT_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelEnvironmentError(
            f"the kernel {kernel_name!r} ({' '.join(command)}) does not start: {exc}"
        ) from None
    try:
        if done.returncode != 0:
            raise ValueError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError) as exc:
        raise KernelEnvironmentError(
            f"the kernel {kernel_name!r} ({' '.join(command)}) cannot run the notebook: {exc}; "
            "install the project's requirements into that Python, or remove the user's kernelspec "
            "(jupyter kernelspec list)"
        ) from None


def key_inputs(
    nb: nbformat.NotebookNode,
    parameters: dict[str, Any],
    data: dict[str, str] | None,
    environment: dict[str, str],
) -> dict[str, Any]:
    """The JSON document whose hash is the key (stored next to each run, to explain a cache miss)."""
    return {
        "code_cells": code_sources(nb),
        "parameters": {k: v for k, v in sorted(parameters.items()) if k not in LOCATION_PARAMETERS},
        "data": data,
        "environment": environment,
    }


def cache_key(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def explain_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which key inputs differ between two runs (for the 'cache miss because ...' message)."""
    reasons = []
    if old.get("code_cells") != new.get("code_cells"):
        old_cells, new_cells = old.get("code_cells", []), new.get("code_cells", [])
        changed = [i for i, (a, b) in enumerate(zip(old_cells, new_cells, strict=False)) if a != b]
        if len(old_cells) != len(new_cells):
            reasons.append(f"number of code cells {len(old_cells)} -> {len(new_cells)}")
        if changed:
            reasons.append(f"code cell(s) {changed} changed")
    old_params, new_params = old.get("parameters", {}), new.get("parameters", {})
    for name in sorted(set(old_params) | set(new_params)):
        if old_params.get(name) != new_params.get(name):
            reasons.append(f"parameter {name}: {old_params.get(name)!r} -> {new_params.get(name)!r}")
    if old.get("data") != new.get("data"):
        reasons.append("data files changed")
    for name, value in new.get("environment", {}).items():
        if old.get("environment", {}).get(name) != value:
            reasons.append(f"{name}: {old.get('environment', {}).get(name)!r} -> {value!r}")
    return reasons
