"""Kubernetes manifests: valid against the Kubernetes OpenAPI schemas (kubernetes-validate, strict, offline),
complete (probes, resources, non-root), and wired together (selectors, named ports, HPA targets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.33.0"


def documents() -> list[tuple[str, dict]]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = []
    for name in [*kust["resources"], "secret.example.yaml"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                out.append((name, doc))
    return out


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


def test_kustomization_lists_existing_files() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kust["resources"]:
        assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
    images = {i["name"] for i in kust["images"]}
    used = {c["image"] for d in by_kind("Deployment").values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert used <= images, f"images without a kustomize mapping: {used - images}"


@pytest.mark.parametrize("name,doc", documents(), ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_manifest_is_valid_kubernetes(name: str, doc: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:
        kv.validate(doc, K8S_VERSION, strict=True)  # raises on any schema violation
    except kv.ValidationError as e:
        pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e}")


def test_validator_rejects_a_bad_manifest() -> None:
    import kubernetes_validate as kv

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "livenessProb": {}}]}}}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


def test_deployments_are_complete() -> None:
    deployments = by_kind("Deployment")
    assert {"api", "prefect-worker", "prefect-server", "dask-scheduler", "dask-worker"} <= set(deployments)
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0, name
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for c in pod["containers"]:
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert "livenessProbe" in c, f"{name}: no liveness probe"
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c and "httpGet" in c[probe]:
                    assert c[probe]["httpGet"]["port"] in ports, f"{name}: {probe} uses an unknown port"
    api = deployments["api"]["spec"]["template"]["spec"]["containers"][0]
    assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(api)
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert deployments["prefect-worker"]["spec"]["replicas"] == 1
    assert deployments["prefect-worker"]["spec"]["strategy"]["type"] == "Recreate"


def test_services_and_autoscalers_point_at_deployments() -> None:
    deployments = by_kind("Deployment")
    for name, svc in by_kind("Service").items():
        matches = [d for d in deployments.values()
                   if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matches, f"Service {name} selects no Deployment"
        ports = {p["name"] for d in matches for c in d["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"Service {name}: targetPort {p['targetPort']} not exposed"
    hpas = by_kind("HorizontalPodAutoscaler")
    assert "api" in hpas
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_secrets_come_from_a_secret_not_the_manifests() -> None:
    """Database URLs and key digests are read from the Secret; the example Secret holds placeholders only."""
    for name, doc in documents():
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert "URL" not in key or key == "PREFECT_API_URL", f"{name}: {key} belongs in the Secret"
                assert "KEY" not in key and "PASSWORD" not in key, f"{name}: {key} belongs in the Secret"
    example = by_kind("Secret")["fuxiops-secrets"]["stringData"]
    assert all("CHANGE-ME" in v or set(v.strip('[]"')) == {"0"} for v in example.values())
