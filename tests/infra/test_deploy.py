"""docker-compose files and Kubernetes manifests: schema-validated and cross-checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
K8S_VERSION = "1.30.0"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose missing: install the Debian package docker-compose (.ci/run does)",
)
@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]])
def test_compose_files_validate_against_the_compose_spec(files):
    args = [a for f in files for a in ("-f", f)]
    result = subprocess.run(
        ["docker-compose", *args, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose missing")
def test_compose_validation_can_fail(tmp_path):
    broken = _compose()
    broken["services"]["job"]["depends_on"]["postgres"] = {"condition": "when_it_feels_like_it"}
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_compose_services_wait_for_healthy_dependencies_and_pin_images():
    services = _compose()["services"]
    assert {
        "redpanda",
        "topics",
        "redpanda-console",
        "console",
        "postgres",
        "redis",
        "job",
        "explainer",
        "replay",
        "prometheus",
        "grafana",
    } <= set(services)
    for name, svc in services.items():
        if "image" in svc and "build" not in svc and not svc["image"].startswith("fraudstream:"):
            image = svc["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: pin {image}"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert isinstance(cond, dict) and cond["condition"] in {
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} needs a healthcheck"


def test_compose_mounts_the_provisioning_dashboards_rules_and_migrations():
    services = _compose()["services"]
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:" in grafana and "./grafana/dashboards:" in grafana
    assert "./infra/prometheus/rules:" in " ".join(services["prometheus"]["volumes"])
    assert "./infra/sql:/docker-entrypoint-initdb.d" in " ".join(services["postgres"]["volumes"])
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["job"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f.name, doc)
        for f in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(f.read_text())
        if doc is not None
    ]


@pytest.mark.parametrize(
    ("name", "doc"),
    [(n, d) for n, d in _manifests() if d["kind"] not in {"Kustomization", "PodMonitor"}],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_k8s_manifests_validate_against_the_kubernetes_schema(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_schema_validation_can_fail():
    import kubernetes_validate

    (sts,) = [d for _, d in _manifests() if d["kind"] == "StatefulSet"]
    sts = yaml.safe_load(yaml.safe_dump(sts))
    sts["spec"]["template"]["spec"]["containers"][0]["port"] = 9108
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def _by_name() -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for _, d in _manifests() if "metadata" in d}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_statefulset_forms_one_bytewax_cluster():
    docs = _by_name()
    sts = docs["StatefulSet/fraudstream"]
    headless = docs[f"Service/{sts['spec']['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    (job,) = sts["spec"]["template"]["spec"]["containers"]
    env = _env(job)
    # Process id from the pod ordinal; one address per replica, in ordinal order, on the pod DNS names.
    assert env["FRAUDSTREAM_PROCESS_ID"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    addresses = env["FRAUDSTREAM_ADDRESSES"].split(",")
    ns = sts["metadata"]["namespace"]
    cluster_port = next(p["containerPort"] for p in job["ports"] if p["name"] == "cluster")
    assert addresses == [
        f"fraudstream-{i}.{headless['metadata']['name']}.{ns}.svc.cluster.local:{cluster_port}"
        for i in range(sts["spec"]["replicas"])
    ]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    # Recovery on a volume shared by every process.
    mounts = {m["name"]: m["mountPath"] for m in job["volumeMounts"]}
    assert mounts["recovery"] == env["FRAUDSTREAM_RECOVERY_DIR"]
    claim = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "recovery")
    pvc = docs[f"PersistentVolumeClaim/{claim['persistentVolumeClaim']['claimName']}"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # Metrics: the port the probes and the PodMonitor use is METRICS_PORT.
    metrics_port = next(p["containerPort"] for p in job["ports"] if p["name"] == "metrics")
    assert str(metrics_port) == env["METRICS_PORT"]
    monitor = docs["PodMonitor/fraudstream"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_the_retrain_cronjob_shares_the_jobs_models_and_decides_before_training(tmp_path):
    docs = _by_name()
    sts = docs["StatefulSet/fraudstream"]["spec"]["template"]["spec"]
    cron = docs["CronJob/fraudstream-retrain"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = _env(c)
    job_env = _env(sts["containers"][0])
    assert env["FRAUDSTREAM_MODEL_DIR"] == job_env["FRAUDSTREAM_MODEL_DIR"]
    assert env["DATABASE_URL"] == job_env["DATABASE_URL"]
    claims = lambda spec: {  # noqa: E731
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert claims(pod)["models"] == claims(sts)["models"] and mount["models"] == env["FRAUDSTREAM_MODEL_DIR"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    script = c["args"][0]
    assert script.index("models promote") < script.index("train --supervised")
    # The script's exit handling, run by a real shell with stand-ins for the CLI.
    import subprocess

    for promote_status, expected in ((0, 0), (3, 0), (2, 0), (1, 1)):
        bin_dir = tmp_path / f"bin{promote_status}"
        bin_dir.mkdir()
        fake = bin_dir / "fraudstream"
        fake.write_text(
            f'#!/bin/sh\ncase "$1" in models) exit {promote_status} ;; train) echo trained ;; esac\n'
        )
        fake.chmod(0o755)
        run = subprocess.run(
            ["/bin/sh", "-c", script],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FRAUDSTREAM_MODEL_DIR": "/m"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == expected, (promote_status, run.stdout, run.stderr)
        assert ("trained" in run.stdout) == (expected == 0)


def test_k8s_config_file_and_kustomization_are_complete(tmp_path):
    config = _by_name()["ConfigMap/fraudstream-config"]["data"]["fraudstream.yaml"]
    (tmp_path / "fraudstream.yaml").write_text(config)
    settings = load_settings(tmp_path / "fraudstream.yaml", env={})
    assert settings.kafka.partitions == settings.recovery.partitions
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    secrets_used = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, d in _manifests()
        if d["kind"] in {"StatefulSet", "Deployment"}
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets_used == {"fraudstream-secrets"}


def test_compose_creates_every_topic_the_job_uses_and_compacts_decisions():
    """The topics service creates decisions (compact,delete: the gateway reads it from its end)
    and labels, besides the input and output topics."""
    command = " ".join(_compose()["services"]["topics"]["command"])
    for topic in ("transactions", "alerts", "transactions.dlq", "alerts.explained", "labels", "decisions"):
        assert f" {topic}" in command, topic
    assert "rpk topic create decisions" in command and "cleanup.policy=compact,delete" in command


def test_compose_replay_has_zones_centroids_and_sends_labels_to_the_topic():
    replay = _compose()["services"]["replay"]
    command = replay["command"]
    assert "--zones" in command and "--centroids" in command and "--emit-labels" in command
    labels_out = command[command.index("--labels-out") + 1]
    mounts = {v.rsplit("}", 1)[-1].split(":")[1] for v in replay["volumes"]}
    assert labels_out.startswith("/labels/") and "/labels" in mounts and "/zones" in mounts
