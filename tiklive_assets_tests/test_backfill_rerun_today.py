"""Rerunning today's capture says what it did: already captured, how many objects the day holds, walks not redone.

Finished walks are marked complete and never fetched again (credits are money), so a rerun of today fetches only
what is new since the first run. The step must say so in its metadata and its log, not report a bare row of 0s.
"""

from __future__ import annotations

from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox, local_store, metadata


def _info_lines(rig: Rig, result) -> list[str]:
    return [r.user_message for r in rig.instance.all_logs(result.run_id) if r.level == 20 and r.user_message]


def test_rerunning_today_says_already_captured_with_the_days_objects(tmp_path) -> None:
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, local_store(tmp_path))
        rig.config = base_config(
            accounts=[
                {
                    "handle": "alice123",
                    "follow_max_pages": 1,
                    "comments": {"recent_videos": 1, "max_pages": 1, "reply_depth": 1, "max_reply_pages": 1},
                }
            ]
        )
        first = rig.run()
        assert first.success, failures(first)
        requests = sb.stats()["api_requests"]
        again = rig.run()
        assert again.success, failures(again)
        assert sb.stats()["api_requests"] == requests  # nothing fetched twice
    names = [a.key.to_user_string() for a in CAPTURE_ASSETS]
    raw = rig.raw_keys()
    for name in names:
        before, after = metadata(first, name), metadata(again, name)
        assert before["status"] == "captured", name
        assert after["status"] == "already captured today; nothing new to fetch", name
        assert after["credits_spent"] == 0 and after["objects_written"] == 0, name
        assert after["objects_archived_today"] == before["objects_archived_today"] > 0, name
    # the per-asset counts cover the day's raw objects exactly (media files are counted by archived_videos)
    media = len([k for k in rig.listing() if k.startswith(("videos/", "covers/"))])
    assert sum(metadata(again, n)["objects_archived_today"] for n in names) == len(raw) + media
    assert metadata(again, "discovery_queue")["walks_already_complete"] > 0
    assert metadata(again, "account_profiles")["walks_already_complete"] >= 1
    assert metadata(first, "discovery_queue")["walks_already_complete"] == 0
    lines = _info_lines(rig, again)
    said = [line for line in lines if "was already captured today" in line]
    assert len(said) == len(names) and all("fetched only what is new" in line for line in said)
    assert any(line.startswith("discovery_queue for ") and "0 credit(s) spent" in line for line in said)
