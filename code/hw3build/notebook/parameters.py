"""The notebook's parameters: reading the ``parameters`` cell and resolving what a run is given.

Kept beside execution, as papermill keeps ``inspection``/``parameterize`` apart from ``execute``: papermill
only warns about an unknown name and injects ``-p lr 5`` as the int 5, so the names are checked here and
the values typed (hyper-parameters through ``HParams``), and the typed dict is what the cache key hashes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import nbformat

from hw3build.notebook.schema import DEVICES, ParameterError, is_parameters_cell, parameter_values

__all__ = ["ParameterError", "default_parameters", "parameters_cell", "resolve_parameters"]


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The one code cell tagged ``parameters``."""
    cells = [cell for cell in nb.cells if is_parameters_cell(cell)]
    if len(cells) != 1:
        raise ParameterError(
            f"the notebook must have exactly one cell tagged 'parameters', found {len(cells)}"
        )
    return cells[0]


def default_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The ``name = literal`` assignments of the ``parameters`` cell, evaluated safely."""
    return parameter_values(parameters_cell(nb).source)


def resolve_parameters(nb: nbformat.NotebookNode, given: dict[str, Any]) -> dict[str, Any]:
    """The effective, typed parameters: the cell's defaults overridden by ``given``.

    Unknown names are refused. Hyper-parameters (fields of ``hw3.hparams.HParams`` that the cell defines)
    are validated and normalised by ``HParams`` so equal values hash equally whatever their Python type.
    """
    defaults = default_parameters(nb)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ParameterError(
            f"unknown notebook parameter(s) {unknown}; the parameters cell defines {sorted(defaults)}"
        )
    effective = {**defaults, **given}
    from hw3.hparams import HParams

    fields = {f.name for f in dataclasses.fields(HParams)}
    if fields <= set(effective):
        try:
            hparams = HParams.from_dict({name: effective[name] for name in fields})
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        effective.update(hparams.to_dict())
    if "device" in effective and effective["device"] not in DEVICES:
        raise ParameterError(f"device={effective['device']!r}; choose one of {list(DEVICES)}")
    try:
        json.dumps(effective)
    except TypeError as exc:
        raise ParameterError(
            f"parameters must be JSON values (str, number, bool, None, list, dict): {exc}"
        ) from None
    return effective
