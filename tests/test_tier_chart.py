"""The Helm chart's ``sharedCache`` block: one values block per adapter renders manifests
that validate strictly, with the settings vipsgate reads (a PVC for fs, the IRSA
annotation for s3, the Redis URL from a Secret)."""

from __future__ import annotations

from typing import Any

import pytest
from test_deploy import KEYED, _helm, _objects, _one, _render, _schema_errors

from conftest import make_settings

FS = {**KEYED, "sharedCache": {"use": "fs", "fs": {"storageClassName": "efs",
                                                    "size": "20Gi"}}}
S3 = {**KEYED, "sharedCache": {"use": "s3", "pathPrefix": "results", "s3": {
    "bucket": "vipsgate-results", "region": "eu-west-1",
    "roleArn": "arn:aws:iam::123456789012:role/vipsgate-results"}}}
REDIS = {**KEYED, "sharedCache": {"use": "redis",
                                  "redis": {"existingSecret": "vipsgate-redis"}}}
GCS = {**KEYED, "sharedCache": {"use": "gcs", "gcs": {"bucket": "vipsgate-results"}},
       "serviceAccount": {"gcpServiceAccount": "vipsgate@proj.iam.gserviceaccount.com"}}
ABS = {**KEYED, "sharedCache": {"use": "abs", "abs": {"account": "vgstore",
                                                      "container": "results"}},
       "serviceAccount": {"azureClientId": "11111111-2222-3333-4444-555555555555"}}


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objects)["env"]}


@pytest.mark.parametrize("values", [FS, S3, REDIS, GCS, ABS],
                         ids=["fs", "s3", "redis", "gcs", "abs"])
def test_each_adapter_renders_valid_manifests_that_vipsgate_accepts(values: dict) -> None:
    objects = _objects(_render(values))
    assert _schema_errors(objects) == []
    env = _env(objects)
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    if "VIPSGATE_CACHE_REDIS_URL" in env:
        plain["VIPSGATE_CACHE_REDIS_URL"] = "redis://redis:6379/0"  # what the Secret holds
    settings = make_settings(**plain)  # the server would start with these
    assert settings.cache_use == values["sharedCache"]["use"]


def test_fs_mounts_a_read_write_many_claim() -> None:
    objects = _objects(_render(FS))
    claim = _one(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "efs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shared-cache"]["persistentVolumeClaim"]["claimName"] == \
        claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in _container(objects)["volumeMounts"]}
    assert mounts["shared-cache"] == _env(objects)["IMGPROXY_CACHE_FS_ROOT"]
    existing = _objects(_render({**KEYED, "sharedCache": {
        "use": "fs", "fs": {"existingClaim": "shared"}}}))
    assert "PersistentVolumeClaim" not in {o["kind"] for o in existing}
    pod = _one(existing, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "shared-cache", "persistentVolumeClaim": {"claimName": "shared"}} in \
        pod["volumes"]


def test_s3_uses_the_pods_identity() -> None:
    objects = _objects(_render(S3))
    account = _one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
        S3["sharedCache"]["s3"]["roleArn"]
    env = _env(objects)
    assert (env["IMGPROXY_CACHE_BUCKET"], env["IMGPROXY_CACHE_S3_REGION"],
            env["IMGPROXY_CACHE_PATH_PREFIX"]) == ("vipsgate-results", "eu-west-1", "results")


def test_gcs_and_abs_use_the_pods_workload_identity() -> None:
    gcs = _objects(_render(GCS))
    assert _one(gcs, "ServiceAccount")["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "vipsgate@proj.iam.gserviceaccount.com"}
    assert _env(gcs)["IMGPROXY_CACHE_BUCKET"] == "vipsgate-results"
    assert "azure.workload.identity/use" not in \
        _one(gcs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    abs_ = _objects(_render(ABS))
    assert _one(abs_, "ServiceAccount")["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555"}
    labels = _one(abs_, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    env = _env(abs_)
    assert (env["IMGPROXY_CACHE_ABS_NAME"], env["IMGPROXY_CACHE_BUCKET"]) == \
        ("vgstore", "results")


def test_redis_url_comes_from_a_secret() -> None:
    env = _env(_objects(_render(REDIS)))
    assert env["VIPSGATE_CACHE_REDIS_URL"] == {
        "secretKeyRef": {"name": "vipsgate-redis", "key": "redis-url"}}


def test_off_by_default() -> None:
    objects = _objects(_render(KEYED))
    assert not [name for name in _env(objects) if name.startswith(("IMGPROXY_CACHE_",
                                                                   "VIPSGATE_CACHE_"))]
    assert "PersistentVolumeClaim" not in {o["kind"] for o in objects}


@pytest.mark.parametrize(("values", "message"), [
    ({"sharedCache": {"use": "s3"}}, "sharedCache.s3.bucket is required"),
    ({"sharedCache": {"use": "redis"}}, "sharedCache.redis.existingSecret is required"),
    ({"sharedCache": {"use": "gcs"}}, "sharedCache.gcs.bucket is required"),
    ({"sharedCache": {"use": "abs", "abs": {"container": "c"}}},
     "sharedCache.abs.account is required"),
    ({"sharedCache": {"use": "nfs"}}, "sharedCache/use|sharedCache.use"),  # the schema
])
def test_incomplete_values_fail_the_render(values: dict, message: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match=message):
        _render({**KEYED, **values})
