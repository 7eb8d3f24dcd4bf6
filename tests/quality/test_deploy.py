"""The deployment files are checked by the tools that will read them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from jobs.cli import cli
from jobs.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"


class TestSystemd:
    """The units pass `systemd-analyze verify` without a single warning."""

    def test_units_verify(self, tmp_path: Path) -> None:
        """The daemon and the templated one-shot (instantiated for one date)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.fail("systemd-analyze is needed to check deploy/systemd (apt install systemd)")
        # verify insists that ExecStart exists: point it at this environment's recycler.
        recycler = str(Path(sys.executable).with_name("recycler"))
        for unit in (DEPLOY / "systemd").glob("*.service"):
            text = unit.read_text().replace("/opt/recycler/venv/bin/recycler", recycler)
            (tmp_path / unit.name).write_text(text)
        result = subprocess.run(
            [
                analyze,
                "verify",
                "recycler.service",
                "recycler-api.service",
                "recycler-run@2026-11-20.service",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr

    def test_hardening_and_restart(self) -> None:
        """The daemon restarts on failure, reads secrets from an env file, and is confined."""
        text = (DEPLOY / "systemd" / "recycler.service").read_text()
        for line in (
            "Restart=on-failure",
            "EnvironmentFile=/etc/recycler/recycler.env",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=",
        ):
            assert line in text.splitlines(), line

    def test_rerun_unit_takes_the_date_from_the_instance(self) -> None:
        """recycler-run@2026-11-20.service runs `recycler run --date 2026-11-20`."""
        text = (DEPLOY / "systemd" / "recycler-run@.service").read_text()
        assert "ExecStart=/opt/recycler/venv/bin/recycler run --date %i --wait 3600" in text
        assert "Type=oneshot" in text


def _documents(name: str) -> list[dict[str, object]]:
    with (DEPLOY / "kubernetes" / name).open() as handle:
        return [document for document in yaml.safe_load_all(handle) if document]


class TestKubernetes:
    """The manifests validate against the Kubernetes schemas, strictly (no unknown fields)."""

    @pytest.mark.parametrize("name", ["daemon.yaml", "cronjob.yaml", "api.yaml"])
    def test_schema(self, name: str) -> None:
        """Every document is a valid resource of its kind."""
        documents = _documents(name)
        assert documents
        for document in documents:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)

    def test_cronjob_never_overlaps(self) -> None:
        """concurrencyPolicy Forbid, in the operator's time zone, with the secret referenced."""
        (cronjob,) = [doc for doc in _documents("cronjob.yaml") if doc["kind"] == "CronJob"]
        spec = cronjob["spec"]
        assert isinstance(spec, dict)
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["timeZone"] == "Asia/Phnom_Penh"
        assert "recycler-secrets" in yaml.safe_dump(cronjob)

    def test_daemon_secrets_come_from_a_secret(self) -> None:
        """The auth token is a secretKeyRef, never a literal."""
        (deployment,) = [doc for doc in _documents("daemon.yaml") if doc["kind"] == "Deployment"]
        text = yaml.safe_dump(deployment)
        assert "twilio-auth-token" in text
        assert "secretKeyRef" in text

    def test_api_key_is_shared_by_every_replica(self) -> None:
        """The signing key comes from one Secret, the database URL from another; /healthz probes."""
        (deployment,) = [doc for doc in _documents("api.yaml") if doc["kind"] == "Deployment"]
        text = yaml.safe_dump(deployment)
        assert "secretName: recycler-api-key" in text
        assert "recycler-api-secrets" in text
        assert text.count("path: /healthz") == 2


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {})
    found: list[dict[str, Any]] = template.get("spec", {}).get("containers", [])
    return found


def _is_command(arguments: list[str]) -> bool:
    """Whether `recycler ARGUMENTS --help` is a command recycler knows."""
    words = [word for word in arguments if not word.startswith("-")][:2]
    return CliRunner().invoke(cli, [*words, "--help"]).exit_code == 0


class TestWhatTheyRun:
    """Settings in ConfigMaps validate; containers and units run commands that exist."""

    @pytest.mark.parametrize(
        "path", sorted((DEPLOY / "kubernetes").glob("*.yaml")), ids=lambda path: path.name
    )
    def test_manifest(self, path: Path) -> None:
        seen = 0
        for document in _documents(path.name):
            if document["kind"] == "ConfigMap":
                data = document["data"]
                assert isinstance(data, dict)
                Settings(**tomllib.loads(data["recycler.toml"]))  # a misspelt setting raises
                seen += 1
            for container in _containers(document):
                assert _is_command(container["args"]), container["args"]
                seen += 1
        assert seen

    @pytest.mark.parametrize(
        "path", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda path: path.name
    )
    def test_unit(self, path: Path) -> None:
        match = re.search(r"^ExecStart=\S*/recycler (.+)$", path.read_text(), re.MULTILINE)
        assert match is not None
        assert _is_command(match.group(1).replace("%i", "2026-11-26").split())


class TestContainerfile:
    """The image the manifests name is built by deploy/Containerfile. No container registry is
    reachable from this machine (the base image cannot be pulled), so CI lints the file with
    hadolint instead of building it, and holds its version to the package's and the
    manifests'."""

    def test_hadolint_finds_nothing(self) -> None:
        hadolint = Path(sys.executable).parent / "hadolint"
        result = subprocess.run(
            [str(hadolint), "--no-color", str(DEPLOY / "Containerfile")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stdout) == (0, "")

    def test_one_version_everywhere(self) -> None:
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        containerfile = (DEPLOY / "Containerfile").read_text()
        assert re.findall(r"^ARG RECYCLER_VERSION=(\S+)$", containerfile, re.MULTILINE) == [version]
        images = {
            match
            for path in (DEPLOY / "kubernetes").glob("*.yaml")
            for match in re.findall(r"image: \S+/recycler:(\S+)", path.read_text())
        }
        assert images == {version}

    def test_runs_unprivileged_with_a_healthcheck(self) -> None:
        lines = (DEPLOY / "Containerfile").read_text().splitlines()
        final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM")) :]
        assert any(line.startswith("USER 10001") for line in final_stage)
        assert any(line.startswith("HEALTHCHECK") and "status" in line for line in final_stage)
        assert 'ENTRYPOINT ["recycler"]' in final_stage


@pytest.mark.needs_kannel
class TestKannel:
    """The example kannel.conf is read by Kannel's own configuration reader."""

    def test_kannel_reads_the_example(self) -> None:
        checked = subprocess.run(
            ["/usr/lib/kannel/test/test_cfg", str(DEPLOY / "kannel" / "kannel.conf")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "cfg_read returned 0" in checked.stdout + checked.stderr

    def test_a_wrong_field_is_noticed(self, tmp_path: Path) -> None:
        """So that the test above can fail."""
        wrong = tmp_path / "kannel.conf"
        wrong.write_text((DEPLOY / "kannel" / "kannel.conf").read_text() + "bogus-field = 1\n")
        checked = subprocess.run(
            ["/usr/lib/kannel/test/test_cfg", str(wrong)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "cfg_read returned -1" in checked.stdout + checked.stderr
