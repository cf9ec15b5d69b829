"""Writing a file so that nobody ever reads half of it: the project's one atomic write.

The data goes to a temporary file in the destination's folder, is flushed to disk, and is renamed
over the destination (a rename within one file system is atomic). After a crash, a `kill -9`, a
power cut or a full disk, the destination holds its old bytes or the new ones, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], Any]) -> Path:
    """Replace `path` by `data` in one step and return the path.

    `data` is bytes, text (written as UTF-8), or a function that writes into the open binary file
    (e.g. `lambda f: torch.save(obj, f)`). Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates the file readable by its owner only
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented JSON (UTF-8, non-ASCII kept readable), written with `write_atomic`."""
    return write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after it must not bring back the old
    entry)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
