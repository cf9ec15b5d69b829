"""Failpoints: named places where a test can stop a real build, to kill it there.

With ``HW3_FAILPOINT=<name>`` in the environment, the build writes its pid into ``$HW3_FAILPOINT_FILE``
when it reaches the failpoint of that name and then waits until it is killed. The fault-injection suite
(``tests/faults``) uses them to SIGKILL a real build at the start of each stage and at the few points
inside a stage where an interruption would be most harmful (as FoundationDB's and TiKV's failpoints do).
Unset, a failpoint costs one dictionary lookup.

``HW3_FAILPOINT_ACTION=enospc`` makes the failpoint raise ``OSError(ENOSPC)`` instead, as a full disk
would at that point (the next write there would fail).

The names: every stage of ``hw3build.build.STAGE_NAMES`` (at the stage's start), plus those in ``INNER``.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from hw3.files import write_atomic

ENV_NAME = "HW3_FAILPOINT"
ENV_FILE = "HW3_FAILPOINT_FILE"
ENV_ACTION = "HW3_FAILPOINT_ACTION"
ENOSPC = "enospc"
INNER = (
    "execute:kernel-running",  # the first code cell has run: the kernel is alive, run/.tmp-* is populated
    "execute:publish",  # a finished run is between its two renames (old run moved away, new not yet in)
    "latexmk",  # the report's TeX folder is written and latexmk is about to run in it
    "latexmk:cover",  # the pre-flight's cover check is about to run TeX (before any training)
    "zip:staged",  # the new zip is written in dist/.staging, not yet validated nor renamed
    "recover",  # recovery after a killed build has done its first step (moved or removed one folder)
)


def failpoint(name: str) -> None:
    """Stop here for good when ``$HW3_FAILPOINT`` names this point (a test then kills the process)."""
    if os.environ.get(ENV_NAME) != name:
        return
    if os.environ.get(ENV_ACTION) == ENOSPC:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (failpoint {name!r})")
    print(f"[failpoint] paused at {name!r} ({ENV_NAME} is set); waiting to be killed", file=sys.stderr)
    marker = os.environ.get(ENV_FILE)
    if marker:
        write_atomic(marker, f"{os.getpid()}\n")
    while True:
        time.sleep(3600)
