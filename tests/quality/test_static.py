"""Static checks the project holds itself to, run as tests so that CI enforces them."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from jobs.vocabulary import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    """The tool installed next to this Python (the test extra installs them)."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_mypy_strict() -> None:
    """jobs and notifier type-check under mypy --strict."""
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint() -> None:
    """No lint findings."""
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """Formatted as ruff formats."""
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_notifier_is_a_leaf() -> None:
    """notifier imports nothing from jobs nor any database library (import-linter contract)."""
    result = _run(_tool("lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_audit_events_are_named_from_the_vocabulary() -> None:
    """No audit event type is spelt as a bare string, in the code or in its tests (issue 12):
    each comes from jobs.vocabulary.AuditEvent. Migrations keep their own frozen words."""
    spelt = {f'"{event.value}"' for event in AuditEvent} | {
        f"'{event.value}'" for event in AuditEvent
    }
    found = []
    for folder in ("jobs", "notifier", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or relative.startswith(
                ("tests/migration/", "tests/quality/")
            ):
                continue
            if relative == "jobs/vocabulary.py":
                continue
            source = path.read_text(encoding="utf-8")
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                if token.type == tokenize.STRING and token.string in spelt:
                    found.append(f"{relative}:{token.start[0]}: {token.string}")
    assert found == []
