"""Named points where tests can make a process die or pause, to prove crash safety.

Set ``RECYCLER_FAILPOINTS`` to a comma-separated list of ``name=action``; actions are ``kill``
(SIGKILL to the process itself: no cleanup, no rollback by Python) and ``sleep:SECONDS``.
Unset in production, where every failpoint is a no-op. The names are listed in the README.
"""

from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["failpoint"]

_VARIABLE = "RECYCLER_FAILPOINTS"


def failpoint(name: str) -> None:
    """Act on the failpoint `name` if the environment asks for it."""
    spec = os.environ.get(_VARIABLE)
    if not spec:
        return
    for entry in spec.split(","):
        point, _, action = entry.strip().partition("=")
        if point != name:
            continue
        # Announce first, so that a test waiting for the point knows it was reached.
        print(f"failpoint {name}: {action}", file=sys.stderr, flush=True)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action.startswith("sleep:"):
            time.sleep(float(action.removeprefix("sleep:")))
