"""Every error the build defines derives from one base, hw3build.errors.BuildError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import hw3build
from hw3build.errors import BuildError


def build_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for module_info in pkgutil.walk_packages(hw3build.__path__, "hw3build."):
        if module_info.name.endswith("__main__"):  # running it is the command line
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_build_error_derives_from_build_error() -> None:
    found = build_exceptions()
    assert len(found) >= 10  # the walk found the modules
    assert [name for name, cls in found.items() if not issubclass(cls, BuildError)] == []
