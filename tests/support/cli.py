"""Running the real command line in a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Command", "environment", "recycler", "start", "wait_until"]


def environment(database_url: str | None = None, **settings: str) -> dict[str, str]:
    """The process environment for a subprocess: ours, minus RECYCLER_* settings, plus these."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RECYCLER_") or name.startswith("RECYCLER_TEST_")
    }
    if database_url is not None:
        env["RECYCLER_DATABASE_URL"] = database_url
    env["RECYCLER_LOG_FORMAT"] = "json"
    for name, value in settings.items():
        env[f"RECYCLER_{name.upper()}"] = value
    return env


class Command:
    """A finished command: exit code, standard output and error."""

    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def json(self) -> Any:
        """Standard output parsed as one JSON document."""
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def recycler(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> Command:
    """Run `recycler ARGS` to completion."""
    completed = subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Command(completed)


class Running:
    """A command still running; its output is collected as it comes, line by line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(process.stdout, self.stdout_lines)),
            threading.Thread(target=self._read, args=(process.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Block until a line of standard error contains the text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.stderr_lines):
                return
            if self.process.poll() is not None and not self._readers[1].is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"never saw {text!r}; stderr:\n{''.join(self.stderr_lines)}")

    def finish(self, timeout: float = 300) -> Command:
        """Wait for the end and return what it printed."""
        self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return Command(
            subprocess.CompletedProcess(
                self.process.args,
                self.process.returncode,
                "".join(self.stdout_lines),
                "".join(self.stderr_lines),
            )
        )


def start(*args: str, env: dict[str, str], cwd: Path | None = None) -> Running:
    """Start `recycler ARGS` without waiting."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Running(process)


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll until the condition holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
