"""Purging a gone video's content once its day is compacted: its details are bundle members by then, removed by
rewriting the bundle (the other members keep their bytes); a held bundle keeps them and the video is not purged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tiklive_assets.compliance.compaction import compact_day
from tiklive_assets.compliance.legal_hold import LegalHolds
from tiklive_assets.defs.refresh.assets import refreshed_posts
from tiklive_assets.state.refresh import RefreshState
from tiklive_assets.storage.bundles import live_bundles_of_day, read_bundle
from tiklive_assets.storage.keys import refresh_slug
from tiklive_assets_tests.support.capture import Rig, base_config, frozen_sandbox, local_store, metadata, today
from tiklive_assets_tests.test_refresh import refresh


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with frozen_sandbox() as sb:
        yield Rig(sb, tmp_path / "home", local_store(tmp_path))


def _bundle_bodies(rig: Rig, endpoint: str) -> tuple[str, dict[str, bytes]]:
    key = live_bundles_of_day(rig.store(), today())[endpoint]
    return key, {member.key: body for member, body in read_bundle(rig.store(), key)}


def _not_purged(rig: Rig) -> set[str]:
    with rig.state() as state:
        return {gone.aweme_id for gone in RefreshState(state).gone()}


def test_gone_video_purged_from_its_compacted_day_unless_the_bundle_is_held(rig: Rig) -> None:
    rig.config = base_config(
        hashtags=[],
        limits={"max_pages": 1, "max_videos_per_day": 2},
        refresh={"ages_hours": [1, 6], "daily_credits": 100, "max_age_days": 35},
        compaction={"hot_days": 30},
        tombstones={"purge_raw_after_days": 1},
    )
    doomed = rig.sb.publish_video("alice123")
    assert rig.run().success
    refresh(rig, at_hours=1.5)
    rig.sb.delete_video(doomed)
    assert metadata(refresh(rig, at_hours=6.5), refreshed_posts)["tombstones_by_reason"]

    store = rig.store()
    folder = f"tiklive-raw/{today():%Y/%m/%d}/post-detail"
    content = {f"{folder}/{doomed}.json.gz", f"{folder}/{refresh_slug(doomed, 1)}.json.gz"}
    gone_answer = f"{folder}/{refresh_slug(doomed, 6)}-http404.json.gz"
    compact_day(store, today())
    assert not any(store.exists(key) for key in [*content, gone_answer])  # packed: no loose copy is left
    bundle, before = _bundle_bodies(rig, "post-detail")
    others = {key: body for key, body in before.items() if key not in content and key != gone_answer}
    assert content | {gone_answer} <= set(before) and others  # other videos' details share the bundle

    with rig.state() as state:
        files = {f.kind: f.storage_key for f in state.files_for(doomed)}
        LegalHolds(state).place(next(iter(others)), "case-9: another video's detail")  # holds the whole bundle
    held = metadata(refresh(rig, at_hours=6.5 + 25), refreshed_posts)
    assert held["purge_kept_by_legal_hold"] == len(content)
    assert held["purged_objects"] == 3 and not any(store.exists(files[k]) for k in ("video", "sidecar", "cover"))
    assert _bundle_bodies(rig, "post-detail") == (bundle, before)  # the held bundle is untouched
    assert doomed in _not_purged(rig)  # its content is still stored: not purged, tried again next run

    with rig.state() as state:
        assert LegalHolds(state).release(next(iter(others)))
    done = metadata(refresh(rig, at_hours=6.5 + 26), refreshed_posts)
    assert done["purged_objects"] == len(content) and done["purge_kept_by_legal_hold"] == 0
    new_bundle, after = _bundle_bodies(rig, "post-detail")
    assert new_bundle != bundle and not store.exists(bundle)  # the next generation replaced it
    assert not content & set(after)
    assert after == {key: body for key, body in before.items() if key not in content}  # the rest, byte for byte
    assert gone_answer in after  # the record of the deletion stays
    assert doomed not in _not_purged(rig)
    again = metadata(refresh(rig, at_hours=6.5 + 27), refreshed_posts)
    assert again["purged_objects"] == 0 and _bundle_bodies(rig, "post-detail")[0] == new_bundle
