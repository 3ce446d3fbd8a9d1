"""The deployment files are valid and agree with the code: the compose file against the
Compose specification, the Kubernetes manifests against the Kubernetes API schemas, the
systemd units with systemd-analyze, and every pool, queue, metric and variable they name
exists in the application."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cli.main import build_parser
from shared.channels import Channel

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent


def documents(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", DEPLOY / "compose.yaml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_one_service_per_pool_with_commands_the_cli_accepts() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("rabbitmq", "postgres", "redis", "gateway"):
        assert name in services
    parser = build_parser()
    pools = {}
    for name, service in services.items():
        if not name.startswith("worker-"):
            continue
        args = parser.parse_args(service["command"])
        pools[args.channels[0]] = service["deploy"]["replicas"]
    assert {c.queue_name for c in Channel} <= set(pools)


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", *sorted((DEPLOY / "kubernetes").glob("*.yaml"))],
        capture_output=True,
        text=True,
    )
    # KEDA's custom resources have no bundled schema: checked structurally below.
    failures = [line for line in result.stdout.splitlines() if not line.startswith(("INFO", "WARN"))]
    assert result.returncode == 0 and not failures, result.stdout + result.stderr


def test_every_pool_has_a_deployment_scaled_by_its_own_queue() -> None:
    docs = [d for p in (DEPLOY / "kubernetes").glob("*.yaml") for d in documents(p)]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}  # type: ignore[index]
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    parser = build_parser()
    queues = set()
    for obj in scaled:
        spec = obj["spec"]  # type: ignore[index]
        target = deployments[spec["scaleTargetRef"]["name"]]
        container = target["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
        args = parser.parse_args(container["args"])
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == args.channels[0]
        queues.add(trigger["metadata"]["queueName"])
    assert {c.queue_name for c in Channel} <= queues


def test_systemd_units_verify(tmp_path: Path) -> None:
    for unit in (DEPLOY / "systemd").glob("*.service"):
        # verify checks that ExecStart exists; point it at a binary this machine has.
        text = unit.read_text().replace(
            "/opt/kai-messaging/bin/kai-messaging", shutil.which("true") or "/bin/true"
        )
        name = unit.name.replace("@.service", "@email.service")
        (tmp_path / name).write_text(text)
        result = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_env_example_documents_every_variable_the_settings_read() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / ".env.example").read_text(), re.MULTILINE))
    shared = Path(__file__).resolve().parents[2] / "shared"
    sources = "\n".join(p.read_text() for p in shared.rglob("*.py"))
    read = set(re.findall(r'get\("([A-Z][A-Z0-9_]+)"', sources))
    # Settings modules also pass variable names to small parsing helpers.
    settings_sources = (shared / "config.py").read_text() + (shared / "webhooks" / "settings.py").read_text()
    read |= {
        name
        for name in re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"', settings_sources)
        if name != "IN_APP"
    }
    read |= {
        f"{prefix}_{suffix}"
        for prefix in ("EMAIL", "SMS", "WEBHOOK", "IN_APP")
        for suffix in ("MAX_RETRIES", "RETRY_DELAY", "MAX_RETRY_DELAY")
    }
    assert read - documented == set()


def test_the_dashboard_uses_metrics_the_code_exports() -> None:
    import json

    from shared import metrics

    exported = {m._name for m in vars(metrics).values() if hasattr(m, "_name")} | {"kai_queue_depth"}
    dashboard = json.loads((DEPLOY / "grafana" / "kai-messaging.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(kai_[a-z_]+?)(?:_bucket|_total)?\b", target["expr"])
    }
    assert used - exported == set(), used - exported
