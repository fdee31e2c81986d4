"""A capture rig for tests: the sandbox on a frozen clock, a tracking YAML, real resources, and `dg.materialize`.

The sandbox's clock is frozen at a fixed instant so its corpus (ids, pages, feeds) is the same on every run;
the pipeline itself still captures today's UTC partition (the API only serves the present).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_aws.s3 import S3Resource

from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
)
from tiklive_assets.sandbox import (
    DEFAULT_API_KEY,
    SandboxConfig,
    SandboxServer,
    cover_bytes,
    video_bytes,
)
from tiklive_assets.state import StateDB
from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.base import is_conflict_key

FROZEN_NOW = 1780056000.0  # 2026-05-29T12:00:00Z: the sandbox's clock, so its corpus never moves under a test
RAW_PREFIX = "tiklive-raw/"
ALICE_ID = "6800000000000000001"


def today() -> date:
    return datetime.now(UTC).date()


def base_config(**sections: Any) -> dict[str, Any]:
    """A small tracking config: one account (no follow graph, no comments), one hashtag, 1 page, 4 videos each."""
    config: dict[str, Any] = {
        "plan": {"requests_per_minute": 100_000},
        "limits": {"max_pages": 1, "max_videos_per_day": 4},
        "capture": {"download_concurrency": 4, "api_concurrency": 4},
        "accounts": [{"handle": "alice123", "followers": False, "following": False, "comments": {"recent_videos": 0}}],
        "hashtags": ["1001"],
    }
    config.update(sections)
    return config


@contextmanager
def frozen_sandbox(**config: Any) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(clock=lambda: FROZEN_NOW, **config)) as server:
        yield server


def expected_video(sb: SandboxServer, aweme_id: str) -> bytes:
    """The exact MP4 bytes the capture must store: hdplay when the video has it, else play."""
    post = sb.corpus.find_post(aweme_id)
    assert post is not None, aweme_id
    variant = "hdplay" if post.has_hd else "play"
    return video_bytes(aweme_id, variant, sb.corpus.video_size(aweme_id, variant))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Rig:
    """One capture deployment (data root + archive store + tracking YAML) pointed at one sandbox."""

    sb: SandboxServer
    home: Path
    archive_store: ArchiveStoreResource
    config: dict[str, Any] = field(default_factory=base_config)
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)

    @property
    def config_path(self) -> Path:
        return self.home / "tiklive.yaml"

    def write_config(self, config: dict[str, Any] | None = None) -> None:
        if config is not None:
            self.config = config
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))

    def resources(self) -> dict[str, dg.ConfigurableResource]:
        return {
            "tiklive_api": TikLiveApiResource(
                api_key=DEFAULT_API_KEY, base_url=self.sb.base_url, ratelimit_url="memory://"
            ),
            "archive_store": self.archive_store,
            "data_root": DataRootResource(home=str(self.home)),
            "tracking": TrackingConfigResource(path=str(self.config_path)),
        }

    def run(self, *assets: dg.AssetsDefinition, partition: date | None = None) -> dg.ExecuteInProcessResult:
        """Materialize the capture assets (all, or only ``assets``) for ``partition`` (default today UTC)."""
        self.write_config()
        return dg.materialize(
            CAPTURE_ASSETS,
            selection=[a.key for a in assets] if assets else None,
            partition_key=(partition or today()).isoformat(),
            resources=self.resources(),
            instance=self.instance,
            raise_on_error=False,
        )

    # -- what the run left behind ----------------------------------------------------------------

    def store(self) -> ObjectStore:
        return self.archive_store.open()

    def state(self) -> StateDB:
        return StateDB.from_url(f"sqlite:///{self.home / 'state.sqlite'}")

    def listing(self, prefix: str = "") -> dict[str, tuple[int, datetime]]:
        return {info.key: (info.size, info.last_modified) for info in self.store().list(prefix)}

    def raw_keys(self, *, conflicts: bool = False) -> list[str]:
        return [k for k in self.listing(RAW_PREFIX) if is_conflict_key(k) == conflicts]

    def raw_json(self, key: str) -> Any:
        return json.loads(gzip.decompress(self.store().get_bytes(key)))

    def queue(self) -> dict[str, str]:
        """aweme_id -> state of every queued id (read straight from the embedded state database)."""
        with sqlite3.connect(self.home / "state.sqlite") as conn:
            return dict(conn.execute("SELECT aweme_id, state FROM archive_queue"))

    def ids_in(self, state: str) -> set[str]:
        return {aweme_id for aweme_id, s in self.queue().items() if s == state}

    def assert_archived(self, aweme_ids: Iterable[str], day: date | None = None) -> None:
        """Each id's MP4 (the sandbox's exact bytes), cover and sidecar are stored and recorded with sha256 + size."""
        day = day or today()
        store = self.store()
        with self.state() as state:
            for aweme_id in aweme_ids:
                files = {f.kind: f for f in state.files_for(aweme_id)}
                assert set(files) == {"video", "cover", "sidecar"}, (aweme_id, files)
                expected = {"video": expected_video(self.sb, aweme_id), "cover": cover_bytes(aweme_id)}
                for kind, data in expected.items():
                    record = files[kind]
                    assert record.sha256 == sha256(data) and record.size == len(data), (aweme_id, kind)
                    assert sha256(store.get_bytes(record.storage_key)) == record.sha256, (aweme_id, kind)
                    assert record.ingest_date == day
                video, sidecar, cover = (
                    files["video"].storage_key,
                    files["sidecar"].storage_key,
                    files["cover"].storage_key,
                )
                assert video.startswith(f"videos/dt={day}/author=") and video.endswith(f"/{aweme_id}.mp4")
                assert sidecar == video.removesuffix(".mp4") + ".json"
                assert cover == f"covers/dt={day}/{aweme_id}.jpg"
                detail = json.loads(store.get_bytes(sidecar))
                assert str(detail["aweme_id"]) == aweme_id
                assert video == f"videos/dt={day}/author={detail['author']['unique_id']}/{aweme_id}.mp4"
                assert files["sidecar"].sha256 == sha256(store.get_bytes(sidecar))


def local_store(tmp_path: Path) -> ArchiveStoreResource:
    return ArchiveStoreResource(local_root=str(tmp_path / "archive"))


def s3_store(bucket: str, endpoint: str) -> ArchiveStoreResource:
    return ArchiveStoreResource(
        bucket=bucket,
        s3=S3Resource(
            endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ),
    )


def metadata(result: dg.ExecuteInProcessResult, asset: dg.AssetsDefinition | str) -> dict[str, Any]:
    """The materialization metadata of one asset in a run, plain values."""
    name = asset if isinstance(asset, str) else asset.key.to_user_string()
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == name:
            return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{name} was not materialized; failures: {failures(result)}")


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> the failure message of every failed step."""
    out = {}
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            out[event.step_key] = (error.cause.message if error.cause else error.message).strip()
    return out


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
