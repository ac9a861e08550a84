"""One set of behaviour tests for both storage backends: the data directory and a bucket of a real S3 API
server (moto's standalone server, ``tests/s3_server.py``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

import storage.s3_io as s3_io
from storage.base import VERSIONS, NotFound, Storage, StorageError, StoreFull, Version, version_key
from storage.s3 import S3Storage

PREFIX = "ifc/data"  # S3 keys live under a prefix, as in production
MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def read_all(store: Storage, key: str, version: str | None = None) -> bytes:
    return b"".join([block async for block in store.read(key, version)])


async def collect(items: AsyncIterator[Version]) -> list[Version]:
    return [v async for v in items]


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend: Storage
    if request.param == "local":
        from storage.local import LocalStorage

        backend = LocalStorage(tmp_path / "data")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        backend = S3Storage(bucket, PREFIX, endpoint, "us-east-1", presign_expires=300)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def raw_s3(s3_endpoint: str) -> AsyncIterator[Any]:
    """A plain aiobotocore client on the same server, to look behind the backend's back."""
    async with AioSession().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as client:
        yield client


async def bucket_keys(client: Any, bucket: str) -> list[str]:
    listed = await client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def test_receive_then_read_stat_download(store: Storage, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    got = await store.receive("uploads/model.ifc", stream(data), max_bytes=1 * MiB)
    assert (got.key, got.version, got.size, got.latest) == ("uploads/model.ifc", sha(data), len(data), True)
    stat = await store.stat("uploads/model.ifc")
    assert stat is not None and (stat.version, stat.size, stat.latest) == (sha(data), len(data), True)
    assert await read_all(store, "uploads/model.ifc") == data
    assert await read_all(store, "uploads/model.ifc", sha(data)) == data
    dest = tmp_path / "out" / "model.ifc"
    dest.parent.mkdir()
    downloaded = await store.download("uploads/model.ifc", dest)
    assert dest.read_bytes() == data and downloaded.version == sha(data)
    assert [p.name for p in dest.parent.iterdir()] == ["model.ifc"]  # no partial file left beside it
    by_version = await store.download("uploads/model.ifc", dest, sha(data))
    assert by_version.version == sha(data) and by_version.latest
    if isinstance(store, S3Storage):
        assert store.local_path("uploads/model.ifc") is None and store.local_root is None
    else:
        path = store.local_path("uploads/model.ifc")
        assert path is not None and path.read_bytes() == data


async def test_second_receive_is_a_new_version(store: Storage) -> None:
    old, new = b"first model" * 1000, b"second model" * 1000
    await store.receive("uploads/a.ifc", stream(old), max_bytes=MiB)
    await store.receive("uploads/a.ifc", stream(new), max_bytes=MiB)
    latest = await store.stat("uploads/a.ifc")
    assert latest is not None and latest.version == sha(new)
    assert await read_all(store, "uploads/a.ifc") == new
    assert await read_all(store, "uploads/a.ifc", sha(old)) == old
    pinned = await store.stat("uploads/a.ifc", sha(old))
    assert pinned is not None and not pinned.latest and pinned.size == len(old)
    listed = await collect(store.versions("uploads/a.ifc"))
    assert [(v.version, v.latest) for v in listed] == [(sha(new), True), (sha(old), False)]
    # The same bytes again: that version is the latest and the newest once more.
    await store.receive("uploads/a.ifc", stream(old), max_bytes=MiB)
    listed = await collect(store.versions("uploads/a.ifc"))
    assert [(v.version, v.latest) for v in listed] == [(sha(old), True), (sha(new), False)]


async def test_receive_over_the_limit_leaves_nothing(store: Storage) -> None:
    with pytest.raises(ValueError):
        await store.receive("uploads/huge.ifc", stream(b"x" * 10_000, chunk=1000), max_bytes=5000)
    assert await store.stat("uploads/huge.ifc") is None
    assert await collect(store.versions("uploads/huge.ifc")) == []
    assert await collect(store.files()) == []
    assert await collect(store.all_versions()) == []


async def test_publish_a_local_file(store: Storage, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    source = tmp_path / "result.glb"
    source.write_bytes(data)
    got = await store.publish("output/ifcconvert/model.glb", source)
    assert (got.version, got.size, got.latest) == (sha(data), len(data), True)
    assert await read_all(store, "output/ifcconvert/model.glb") == data
    stat = await store.stat("output/ifcconvert/model.glb", sha(data))
    assert stat is not None and stat.latest


async def test_files_lists_latest_keys_only(store: Storage) -> None:
    await store.receive("uploads/a.ifc", stream(b"a1"), max_bytes=MiB)
    await store.receive("uploads/b.ifc", stream(b"b1"), max_bytes=MiB)
    await store.receive("uploads/b.ifc", stream(b"b2"), max_bytes=MiB)
    await store.receive("output/x/y.glb", stream(b"y"), max_bytes=MiB)
    uploads = {v.key: (v.version, v.latest) for v in await collect(store.files("uploads/"))}
    assert uploads == {"uploads/a.ifc": (sha(b"a1"), True), "uploads/b.ifc": (sha(b"b2"), True)}
    everything = {v.key for v in await collect(store.files())}
    assert everything == {"uploads/a.ifc", "uploads/b.ifc", "output/x/y.glb"}
    assert {v.key for v in await collect(store.files("uploads/b"))} == {"uploads/b.ifc"}

    found = {(v.key, v.version, v.latest) for v in await collect(store.all_versions())}
    assert found == {
        ("uploads/a.ifc", sha(b"a1"), True),
        ("uploads/b.ifc", sha(b"b1"), False),
        ("uploads/b.ifc", sha(b"b2"), True),
        ("output/x/y.glb", sha(b"y"), True),
    }


async def test_remove_the_latest_removes_the_key(store: Storage) -> None:
    await store.receive("uploads/a.ifc", stream(b"old"), max_bytes=MiB)
    await store.receive("uploads/a.ifc", stream(b"new"), max_bytes=MiB)
    await store.remove("uploads/a.ifc", sha(b"new"))
    assert await store.stat("uploads/a.ifc") is None
    assert await store.stat("uploads/a.ifc", sha(b"new")) is None
    assert await read_all(store, "uploads/a.ifc", sha(b"old")) == b"old"
    assert [(v.version, v.latest) for v in await collect(store.versions("uploads/a.ifc"))] == [(sha(b"old"), False)]
    await store.remove("uploads/a.ifc", sha(b"old"))
    await store.remove("uploads/a.ifc", sha(b"old"))  # twice: nothing to do
    assert await collect(store.all_versions()) == []


async def test_missing_keys(store: Storage, tmp_path: Path) -> None:
    assert await store.stat("uploads/none.ifc") is None
    assert await store.stat("uploads/none.ifc", "0" * 64) is None
    assert await store.stat("uploads/none.ifc", "not-a-version") is None
    with pytest.raises(NotFound):
        await read_all(store, "uploads/none.ifc")
    with pytest.raises(NotFound):
        await read_all(store, "uploads/none.ifc", "0" * 64)
    with pytest.raises(NotFound):
        await store.download("uploads/none.ifc", tmp_path / "none.ifc")
    assert not (tmp_path / "none.ifc").exists()
    assert await collect(store.versions("uploads/none.ifc")) == []


async def test_a_file_put_in_by_other_means_is_taken_in(store: Storage) -> None:
    data = b"copied in by hand" * 500
    key = "uploads/by-hand.ifc"
    if isinstance(store, S3Storage):
        session = AioSession()
        async with session.create_client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1") as raw:
            await raw.put_object(Bucket=store.bucket, Key=f"{PREFIX}/{key}", Body=data)
    else:
        assert store.local_root is not None
        (store.local_root / "uploads").mkdir(parents=True)
        (store.local_root / key).write_bytes(data)
    assert {v.key: v.version for v in await collect(store.files("uploads/"))} == {key: sha(data)}
    stat = await store.stat(key)
    assert stat is not None and (stat.version, stat.size, stat.latest) == (sha(data), len(data), True)
    assert await read_all(store, key, sha(data)) == data
    assert [(v.version, v.latest) for v in await collect(store.versions(key))] == [(sha(data), True)]


async def test_presigned_put_and_get(store: Storage, tmp_path: Path) -> None:
    if not isinstance(store, S3Storage):
        assert await store.presign_put("up-1", MiB) is None
        assert await store.presign_get("uploads/a.ifc", None, "a.ifc") is None
        return
    data = os.urandom(200_000)
    upload = await store.presign_put("up-1", MiB)
    assert upload is not None and upload.method == "PUT" and upload.upload_id == "up-1"
    async with httpx.AsyncClient() as http:
        put = await http.put(upload.url, content=data, headers=upload.headers)
        assert put.status_code == 200, put.text
        got = await store.confirm("up-1", "uploads/big model.ifc", MiB)
        assert (got.version, got.size, got.latest) == (sha(data), len(data), True)
        with pytest.raises(NotFound):  # taken in once: the incoming object is gone
            await store.confirm("up-1", "uploads/big model.ifc", MiB)

        url = await store.presign_get("uploads/big model.ifc", None, "Modèl 1.ifc")
        assert url is not None
        fetched = await http.get(url)
        assert fetched.status_code == 200 and fetched.content == data
        disposition = fetched.headers["content-disposition"]
        assert disposition.startswith("attachment;") and "filename*=UTF-8''Mod%C3%A8l%201.ifc" in disposition
        pinned = await store.presign_get("uploads/big model.ifc", sha(data), "model.ifc")
        assert pinned is not None and (await http.get(pinned)).content == data

        too_big = await store.presign_put("up-2", 1000)
        assert too_big is not None
        assert (await http.put(too_big.url, content=data)).status_code == 200
        with pytest.raises(ValueError):
            await store.confirm("up-2", "uploads/too-big.ifc", 1000)
        with pytest.raises(NotFound):  # refused and deleted
            await store.confirm("up-2", "uploads/too-big.ifc", 1000)
    with pytest.raises(NotFound):
        await store.confirm("never-uploaded", "uploads/x.ifc", MiB)
    assert await store.stat("uploads/too-big.ifc") is None


async def test_s3_big_stream_goes_through_multipart(
    s3_endpoint: str, s3_bucket: str, raw_s3: Any, tmp_path: Path
) -> None:
    store = S3Storage(s3_bucket, PREFIX, s3_endpoint, "us-east-1", presign_expires=300)
    await store.start()
    try:
        calls: list[str] = []
        client: Any = store._client
        original = client.create_multipart_upload

        async def spy(**kwargs: Any) -> Any:
            calls.append(kwargs["Key"])
            return await original(**kwargs)

        client.create_multipart_upload = spy
        data = os.urandom(20 * MiB)
        got = await store.receive("uploads/big.ifc", stream(data, chunk=MiB), max_bytes=64 * MiB)
        assert got.version == sha(data) and got.size == len(data)
        assert calls and all(f"{PREFIX}/.incoming/" in key for key in calls)
        assert await read_all(store, "uploads/big.ifc") == data
        assert await bucket_keys(raw_s3, s3_bucket) == sorted(
            [f"{PREFIX}/uploads/big.ifc", f"{PREFIX}/{version_key('uploads/big.ifc', sha(data))}"]
        )
        assert not (await raw_s3.list_multipart_uploads(Bucket=s3_bucket)).get("Uploads")

        # Over the limit past the first part: the multipart upload is aborted, nothing is left.
        with pytest.raises(ValueError):
            await store.receive("uploads/huge.ifc", stream(data, chunk=MiB), max_bytes=12 * MiB)
        assert not (await raw_s3.list_multipart_uploads(Bucket=s3_bucket)).get("Uploads")
        assert len(await bucket_keys(raw_s3, s3_bucket)) == 2

        # A big local file goes up in parts too, straight to its version (it is hashed first).
        calls.clear()
        source = tmp_path / "big.glb"
        source.write_bytes(data[: 17 * MiB])
        published = await store.publish("output/big.glb", source)
        assert published.version == sha(data[: 17 * MiB]) and source.exists()
        assert calls == [f"{PREFIX}/{version_key('output/big.glb', published.version)}"]
        assert await read_all(store, "output/big.glb") == data[: 17 * MiB]
    finally:
        await store.close()


async def test_s3_copies_past_the_single_copy_limit(
    s3_endpoint: str, s3_bucket: str, raw_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_io, "COPY_MAX", 8 * MiB)  # stands in for CopyObject's 5 GiB
    monkeypatch.setattr(s3_io, "COPY_PART", 5 * MiB)
    store = S3Storage(s3_bucket, "", s3_endpoint, "us-east-1", presign_expires=300)
    await store.start()
    try:
        data = os.urandom(12 * MiB)
        got = await store.receive("uploads/big.ifc", stream(data, chunk=MiB), max_bytes=64 * MiB)
        assert got.version == sha(data)
        assert await read_all(store, "uploads/big.ifc") == data
        assert await read_all(store, "uploads/big.ifc", sha(data)) == data
        head = await raw_s3.head_object(Bucket=s3_bucket, Key="uploads/big.ifc")
        assert head["Metadata"] == {"sha256": sha(data)}
        assert (await bucket_keys(raw_s3, s3_bucket))[0].startswith(VERSIONS + "/")
    finally:
        await store.close()


async def test_s3_errors_are_storage_errors(s3_endpoint: str) -> None:
    missing_bucket = S3Storage("no-such-bucket-here", "", s3_endpoint, "us-east-1", presign_expires=300)
    await missing_bucket.start()
    try:
        with pytest.raises(StorageError) as raised:
            await missing_bucket.receive("uploads/a.ifc", stream(b"a"), max_bytes=MiB)
        assert not isinstance(raised.value, NotFound)
    finally:
        await missing_bucket.close()

    with pytest.raises(StorageError):
        await S3Storage("b", "", s3_endpoint, "us-east-1", 300).stat("uploads/a.ifc")  # never started


def test_s3_full_answers_are_store_full() -> None:
    def answer(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                           "PutObject")

    assert isinstance(s3_io.map_error(answer("XMinioStorageFull", 507), "k"), StoreFull)
    assert isinstance(s3_io.map_error(answer("QuotaExceeded", 403), "k"), StoreFull)
    assert isinstance(s3_io.map_error(answer("", 507), "k"), StoreFull)
    assert isinstance(s3_io.map_error(answer("NoSuchKey", 404), "k"), NotFound)
    assert isinstance(s3_io.map_error(answer("404", 404), "k"), NotFound)
    other = s3_io.map_error(answer("InternalError", 500), "k")
    assert type(other) is StorageError
    assert type(s3_io.map_error(answer("NoSuchBucket", 404), "k")) is StorageError


async def test_s3_unreachable_is_a_storage_error() -> None:
    from tests.s3_server import _free_port

    closed = S3Storage("b", "", f"http://127.0.0.1:{_free_port()}", "us-east-1", presign_expires=300)
    await closed.start()
    try:
        with pytest.raises(StorageError) as raised:
            await closed.stat("uploads/a.ifc")
        assert not isinstance(raised.value, NotFound)
        with pytest.raises(StorageError):
            await read_all(closed, "uploads/a.ifc")
    finally:
        await closed.close()


async def test_s3_presigned_urls_name_the_public_endpoint(s3_endpoint: str, s3_bucket: str) -> None:
    # The processes reach the store as 127.0.0.1, clients by another name (compose: the service name
    # inside, localhost outside): presigned URLs carry the clients' one and work there.
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    store = S3Storage(s3_bucket, PREFIX, s3_endpoint, "us-east-1", presign_expires=300, public_endpoint_url=public)
    await store.start()
    try:
        await store.receive("uploads/a.ifc", stream(b"public"), 100)
        url = await store.presign_get("uploads/a.ifc", None, "a.ifc")
        assert url is not None and url.startswith(public + "/")
        async with httpx.AsyncClient() as http:
            got = await http.get(url)
        assert got.status_code == 200 and got.content == b"public"
    finally:
        await store.close()
