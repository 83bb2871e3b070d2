"""``local:///`` stays inside IMGPROXY_LOCAL_FILESYSTEM_ROOT: traversal and links answer 404."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import signed
from imagegen import jpeg, load
from vipsgate.errors import SourceNotFound, SourceTooLarge
from vipsgate.paths import encode_source
from vipsgate.sources.local import LocalSource

IMAGE = jpeg(40, 30)


@pytest.fixture
def tree(images: Path) -> Path:
    """``images/`` (the root) with files and links, and a secret beside it."""
    (images / "cat.jpg").write_bytes(IMAGE)
    (images / "sub").mkdir()
    (images / "sub" / "dog.jpg").write_bytes(IMAGE)
    (images / "with space.jpg").write_bytes(IMAGE)
    secret = images.parent / "secret.jpg"
    secret.write_bytes(IMAGE)
    (images / "inside-link.jpg").symlink_to(images / "cat.jpg")
    (images / "outside-link.jpg").symlink_to(secret)
    (images / "outside-dir").symlink_to(images.parent, target_is_directory=True)
    (images / "loop-a").symlink_to(images / "loop-b")
    (images / "loop-b").symlink_to(images / "loop-a")
    return images


def path_for(source: str) -> str:
    return signed("/rs:fit:20:20/" + encode_source(source))


@pytest.mark.parametrize("source", [
    "local:///cat.jpg", "local:///sub/dog.jpg", "local:///inside-link.jpg",
    "local:///sub/../cat.jpg", "local:///with%20space.jpg", "local:////cat.jpg"])
async def test_files_inside_the_root_are_served(make_client, tree: Path, source: str) -> None:
    client = await make_client()
    response = await client.get(path_for(source))
    assert response.status == 200
    out = load(await response.read())
    assert (out.width, out.height) == (20, 15)


ESCAPES = [
    "local:///../secret.jpg", "local:///sub/../../secret.jpg", "local:///%2e%2e/secret.jpg",
    "local:///%2E%2E%2fsecret.jpg", "local:///..%2fsecret.jpg", "local:///outside-link.jpg",
    "local:///outside-dir/secret.jpg", "local:///outside-dir/images/cat.jpg/../../secret.jpg",
    "local:///loop-a", "local:///sub", "local:///", "local:///missing.jpg",
    "local:///cat.jpg%00.png", "local:///" + "a" * 5000,
]


@pytest.mark.parametrize("source", ESCAPES)
async def test_escapes_and_oddities_answer_404(make_client, tree: Path, source: str) -> None:
    client = await make_client()
    response = await client.get(path_for(source))
    assert response.status == 404


async def test_absolute_path_of_a_file_outside_is_taken_relative_to_the_root(
        make_client, tree: Path) -> None:
    secret = tree.parent / "secret.jpg"
    client = await make_client()
    assert (await client.get(path_for(f"local://{secret}"))).status == 404
    os.makedirs(tree / secret.parent.relative_to("/"), exist_ok=True)
    (tree / secret.relative_to("/")).write_bytes(IMAGE)  # now it exists under the root
    assert (await client.get(path_for(f"local://{secret}"))).status == 200


@pytest.mark.parametrize("source", ESCAPES)
def test_resolve_refuses_escapes(tree: Path, source: str) -> None:
    with pytest.raises(SourceNotFound):
        LocalSource(str(tree)).resolve(source)


async def test_fetch_returns_bytes_and_validators(tree: Path) -> None:
    body = await LocalSource(str(tree)).open("local:///cat.jpg", 1024**2)
    assert b"".join([chunk async for chunk in body.chunks()]) == IMAGE
    assert body.meta.size == len(IMAGE)
    assert body.meta.etag and body.meta.last_modified


async def test_size_limit(make_client, tree: Path) -> None:
    with pytest.raises(SourceTooLarge):
        await LocalSource(str(tree)).open("local:///cat.jpg", len(IMAGE) - 1)
    client = await make_client(IMGPROXY_MAX_SRC_FILE_SIZE=str(len(IMAGE) - 1))
    assert (await client.get(path_for("local:///cat.jpg"))).status == 422
