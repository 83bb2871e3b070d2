"""A real S3 API (moto's server mode) on 127.0.0.1, once per test session.

Import the ``s3`` fixture into a test module. moto's in-process ``mock_aws`` does
not intercept aiobotocore, so the proxy talks to this server over HTTP like it
would to AWS or MinIO.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from imagegen import jpeg

BUCKET = "vg-images"
VERSIONED = "vg-versioned"
OTHER = "vg-other"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@dataclass(frozen=True)
class S3World:
    endpoint: str
    client: Any  # a boto3 S3 client for arranging objects
    versions: tuple[str, str]  # version ids of vg-versioned/cat.jpg: 80x60, then 40x40

    def env(self, **extra: str) -> dict[str, str]:
        """Settings that point the proxy at this server."""
        return {"IMGPROXY_USE_S3": "1", "IMGPROXY_S3_ENDPOINT": self.endpoint,
                "IMGPROXY_S3_REGION": "us-east-1", **extra}


@pytest.fixture(scope="session")
def s3() -> Iterator[S3World]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            yield S3World(endpoint, client, _arrange(client))
        finally:
            server.stop()


def _arrange(client: Any) -> tuple[str, str]:
    for bucket in (BUCKET, VERSIONED, OTHER):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=BUCKET, Key="photos/cat.jpg", Body=jpeg(80, 60),
                      ContentType="image/jpeg", CacheControl="public, max-age=600",
                      Expires="Wed, 21 Oct 2037 07:28:00 GMT")
    client.put_object(Bucket=BUCKET, Key="dir with space/cat+1.jpg", Body=jpeg(80, 60))
    client.put_object(Bucket=BUCKET, Key="denied/cat.jpg", Body=jpeg(80, 60))
    client.put_object(Bucket=OTHER, Key="cat.jpg", Body=jpeg(80, 60))
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/denied/*"}]}))
    client.put_bucket_versioning(Bucket=VERSIONED,
                                 VersioningConfiguration={"Status": "Enabled"})
    first = client.put_object(Bucket=VERSIONED, Key="cat.jpg", Body=jpeg(80, 60))["VersionId"]
    second = client.put_object(Bucket=VERSIONED, Key="cat.jpg", Body=jpeg(40, 40))["VersionId"]
    return first, second
