"""The deployment files agree with the code: the image serves the module the project declares, the Helm values use
only variables the project reads, and no secret is written in them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from tiklive_assets import settings

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SECRET_NAMES = {"TIKLIVE_API_KEY", "TIKTOK_RESEARCH_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY"}


def _known_variables() -> set[str]:
    return {value for name, value in vars(settings).items() if name.isupper() and isinstance(value, str)}


def _module_name() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]


def test_the_image_serves_the_declared_code_location_with_the_k8s_extra() -> None:
    text = DOCKERFILE.read_text()
    assert f'"--module-name", "{_module_name()}"' in text
    assert "pip install -e '.[k8s]'" in text  # the definitions load from the source tree's defs/ folder
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(spec.startswith("dagster-k8s") for spec in extras["k8s"])
    for variable in re.findall(r"\b(TIKLIVE_[A-Z_]+|DAGSTER_HOME)=", text):
        assert variable in _known_variables(), f"the Dockerfile sets {variable}, which the project never reads"


def test_helm_values_launch_runs_as_pods_from_the_code_location() -> None:
    values = yaml.safe_load(VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", _module_name()]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    secrets = {s["name"] for s in deployment["envSecrets"]} & {
        s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    }
    assert secrets == {"tiklive-secrets"}, "run pods and the code server read the same secret"


def test_helm_values_name_only_variables_the_project_reads_and_write_no_secret() -> None:
    values = yaml.safe_load(VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    named = {entry["name"] for entry in deployment["env"]}
    unknown = named - _known_variables()
    assert not unknown, f"variables the project does not read: {sorted(unknown)}"
    assert not named & SECRET_NAMES, "secrets come from Kubernetes secrets, never from values"
    # the shared window and the shared state are what make many pods safe; the values' notes say where they come from
    text = VALUES.read_text()
    for needed in (settings.RATELIMIT_URL, settings.STATE_URL, settings.API_KEY):
        assert f"--from-literal={needed}=" in text
    assert not re.search(r"(?m)^[^#]*(api[_-]?key|password)\s*:\s*\S", text, re.IGNORECASE)
