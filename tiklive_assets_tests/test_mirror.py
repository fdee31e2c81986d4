"""Mirror repair: keys the secondary missed are journaled durably in the primary and copied back later.

The secondary is a second moto server of our own (a separate port, stopped for part of a run and restarted on the
same port); the primary is the session's moto server, or a local directory where a test needs to age a marker.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from tiklive_assets.defs.capture.assets import account_profiles, archived_videos, discovery_queue
from tiklive_assets.defs.capture.checks import mirror_replicated
from tiklive_assets.defs.capture.jobs import mirror_repair
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
from tiklive_assets.storage import LocalStore, MirroredStore
from tiklive_assets.storage.mirror import JOURNAL_PREFIX, marker_key, oldest_unreplicated, repair, unreplicated
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox
from tiklive_assets_tests.support.servers import RestartableMoto as Server
from tiklive_assets_tests.support.servers import moto_with_bucket


@pytest.fixture
def secondary(moto_endpoint: str) -> Iterator[tuple[Server, str]]:
    with moto_with_bucket("secondary") as pair:
        yield pair


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _s3(endpoint: str) -> S3Resource:
    # one attempt: a stopped server fails each write at once instead of through botocore's five backoffs
    return S3Resource(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        max_attempts=1,
    )


def _keys(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = _client(endpoint)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_a_secondary_down_for_part_of_a_run_is_repaired_by_the_job(
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    secondary: tuple[Server, str],
) -> None:
    server, bucket = secondary
    resource = ArchiveStoreResource(
        bucket=s3_bucket, s3=_s3(moto_endpoint), secondary_bucket=bucket, secondary_s3=_s3(server.endpoint)
    )
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, resource, base_config())
        server.stop()  # the secondary is down while profiles and discovery are captured
        first = rig.run(account_profiles, discovery_queue)
        assert first.success, failures(first)
        journal = unreplicated(rig.store())
        assert journal and all(e.key.startswith("tiklive-raw/") for e in journal)
        assert {e.key for e in journal} == {k for k in _keys(moto_endpoint, s3_bucket) if not k.startswith("_mirror/")}
        server.start()  # back, same port, same bucket (moto keeps its buckets in-process)
        second = rig.run(archived_videos)
        assert second.success, failures(second)
    primary = {k: v for k, v in _keys(moto_endpoint, s3_bucket).items() if not k.startswith(JOURNAL_PREFIX)}
    assert len(_keys(server.endpoint, bucket)) < len(primary)  # the videos went to both, the early keys did not

    result = mirror_repair.execute_in_process(
        resources={"archive_store": resource, "data_root": DataRootResource(home=str(tmp_path))}
    )
    assert result.success
    assert _keys(server.endpoint, bucket) == primary  # every key, byte for byte
    assert unreplicated(rig.store()) == []
    assert not [k for k in _keys(moto_endpoint, s3_bucket) if k.startswith("_mirror/")]


def test_repair_keeps_markers_while_the_secondary_refuses_and_the_cli_says_so(
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    secondary: tuple[Server, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the environment `tiklive` reads. The secondary refuses with NoSuchBucket (the environment's client
    retries five times, so a refusal keeps this fast where a stopped server would cost botocore's backoffs)."""
    from tiklive_assets.cli.mirror import run as mirror_cli
    from tiklive_assets.defs.resources import default_resources

    server, _ = secondary
    bucket = f"later-{uuid.uuid4().hex[:10]}"
    for name, value in {
        "TIKLIVE_HOME": str(tmp_path),
        "TIKLIVE_ARCHIVE_BUCKET": s3_bucket,
        "TIKLIVE_S3_ENDPOINT_URL": moto_endpoint,
        "TIKLIVE_S3_REGION": "us-east-1",
        "TIKLIVE_ARCHIVE_SECONDARY_BUCKET": bucket,
        "TIKLIVE_SECONDARY_S3_ENDPOINT_URL": server.endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    store = default_resources()["archive_store"].open()
    assert isinstance(store, MirroredStore)
    for n in range(5):
        store.put_bytes(
            f"tiklive-raw/2026/05/29/userid/user{n}.json.gz",
            f"{n}".encode(),
            content_type="application/json",
            content_encoding="gzip",
        )
    assert len(unreplicated(store)) == 5 and len(store.unreplicated) == 5

    out, err = io.StringIO(), io.StringIO()
    assert mirror_cli(Namespace(mirror_command="repair", scan=None, quiet=False, home=None), out, err) == 1
    assert "still missing" in err.getvalue() and "TIKLIVE_ARCHIVE_SECONDARY_BUCKET" in err.getvalue()
    assert "failed 3 times in a row" in err.getvalue()  # a refusing secondary is not asked once per key
    assert len(unreplicated(store)) == 5  # nothing dropped
    assert mirror_cli(Namespace(mirror_command="status", home=None), out, err) == 1

    _client(server.endpoint).create_bucket(Bucket=bucket)
    out = io.StringIO()
    assert mirror_cli(Namespace(mirror_command="repair", scan=None, quiet=False, home=None), out, err) == 0
    assert "[5/5] copied" in out.getvalue() and "5 copied" in out.getvalue()
    assert unreplicated(store) == []
    assert sorted(_keys(server.endpoint, bucket)) == [
        f"tiklive-raw/2026/05/29/userid/user{n}.json.gz" for n in range(5)
    ]
    assert mirror_cli(Namespace(mirror_command="repair", scan=None, quiet=True, home=None), out, err) == 0  # idempotent
    assert mirror_cli(Namespace(mirror_command="status", home=None), out, err) == 0


def test_the_journal_is_idempotent_erasure_drops_markers_and_scan_finds_unjournaled_keys(tmp_path: Path) -> None:
    secondary_root = tmp_path / "secondary"
    secondary_root.write_text("a file where the secondary's directory should be: every write there fails")
    store = MirroredStore(LocalStore(tmp_path / "primary"), LocalStore(secondary_root))
    for _ in range(2):
        store.put_bytes("videos/dt=2026-05-29/author=bob/1.json", b"{}", content_type="application/json")
    store.put_bytes("covers/dt=2026-05-29/2.jpg", b"jpg", content_type="image/jpeg")
    assert [e.key for e in unreplicated(store)] == [
        "covers/dt=2026-05-29/2.jpg",
        "videos/dt=2026-05-29/author=bob/1.json",
    ] or [e.key for e in unreplicated(store)] == [
        "videos/dt=2026-05-29/author=bob/1.json",
        "covers/dt=2026-05-29/2.jpg",
    ]
    assert [i.key for i in store.list("covers/")] == ["covers/dt=2026-05-29/2.jpg"]  # markers never listed as data
    store.primary.delete(marker_key("covers/dt=2026-05-29/2.jpg"))  # a marker that could not be written

    secondary_root.unlink()  # the secondary is back (a directory can be made now)
    store.delete("videos/dt=2026-05-29/author=bob/1.json")  # erased meanwhile: never copied back
    assert unreplicated(store) == []
    report = repair(store, scratch=tmp_path / "tmp", scan_prefix="covers/")
    assert (report.copied, report.scanned, report.failed) == (1, 1, [])
    assert store.secondary.get_bytes("covers/dt=2026-05-29/2.jpg") == b"jpg"


def test_the_check_fails_once_a_key_has_been_missing_for_more_than_a_day(tmp_path: Path) -> None:
    secondary_root = tmp_path / "secondary"
    secondary_root.write_text("blocks the secondary")
    resource = ArchiveStoreResource(local_root=str(tmp_path / "primary"))
    store = MirroredStore(LocalStore(tmp_path / "primary"), LocalStore(secondary_root))
    store.put_bytes("tiklive-raw/2026/05/29/userid/bob.json.gz", b"x", content_type="application/json")

    class Mirrored(ArchiveStoreResource):
        def open(self):  # the same two local stores (ArchiveStoreResource mirrors only to buckets)
            return MirroredStore(LocalStore(tmp_path / "primary"), LocalStore(secondary_root))

    def evaluate() -> dg.AssetCheckResult:
        return mirror_replicated(archive_store=Mirrored(local_root=str(tmp_path / "primary")))

    fresh = evaluate()
    assert fresh.passed and fresh.metadata["unreplicated"].value == 1
    marker = tmp_path / "primary" / marker_key("tiklive-raw/2026/05/29/userid/bob.json.gz")
    two_days_ago = time.time() - 2 * 86400
    os.utime(marker, (two_days_ago, two_days_ago))
    late = evaluate()
    assert not late.passed and late.metadata["older_than_a_day"].value == 1
    assert "mirror_repair" in late.metadata["what_to_do"].value
    count, age, _ = oldest_unreplicated(store)
    assert count == 1 and age.days >= 1
    assert mirror_replicated(archive_store=resource).passed  # no secondary configured: nothing can lag
