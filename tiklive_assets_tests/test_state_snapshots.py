"""State snapshots, restores and the rebuild from the archive: on sqlite and the real local Postgres, local disk and a
real S3 endpoint (moto's server), and against the real sandbox API for the rebuild.

A snapshot must restore to the same rows on either backend, read one moment of a database that keeps changing,
keep 30 days (never the newest), restore the newest snapshot at or before a time, refuse to overwrite rows unless
forced, and the rebuild must leave nothing to pay twice: after losing the state database, a rebuild then a run
spends no detail credit on a video already archived.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tiklive_assets.cli import main as cli_main
from tiklive_assets.compliance.erasure.log import erasure_log
from tiklive_assets.compliance.legal_hold import KeySetTags, LegalHolds
from tiklive_assets.defs.capture import assets as capture_assets
from tiklive_assets.defs.capture.assets import account_profiles, discovery_queue
from tiklive_assets.research.quota import ResearchState, WindowProgress
from tiklive_assets.state import ClaimOwner, StateDB
from tiklive_assets.state.snapshots import (
    MANIFEST,
    PREFIX,
    StateNotEmpty,
    choose_snapshot,
    list_snapshots,
    prune_snapshots,
    restore_snapshot,
    snapshot_name,
    take_snapshot,
)
from tiklive_assets.state.tables import read_consistently, state_tables
from tiklive_assets.storage.local import LocalStore
from tiklive_assets_tests.support.capture import ALICE_ID, Rig, failures, frozen_sandbox, local_store, s3_store, today

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def fill(state: StateDB, tag: str = "a") -> None:
    """A row in every table: queue ids in each state (one claimed), a dead letter, files, cursors with history,
    credits, a cached user id, kv with a legal hold, a claim owner, Research quota and window progress."""
    state.enqueue([(aweme_id, "account:alice123", "alice123") for aweme_id in ("1001", "1011", "1021", "1031", "1041")])
    owner = ClaimOwner.this_process("run-1")
    state.register_owner(owner)
    state.claim_pending(1, owner=owner)
    state.mark_resolved("1011", "alice123")
    state.mark_downloaded("1021")
    state.mark_dead("1031", "video not found (deleted)", 404)
    state.record_file("1021", "video", "videos/dt=2026-11-24/author=alice123/1021.mp4", "ab" * 32, 3, NOW.date())
    state.record_file("1021", "cover", "covers/dt=2026-11-24/1021.jpg", None, None, NOW.date())
    state.set_cursor("user-posts:107955:2026-11-24", "1700000000", 1)
    state.set_cursor("user-posts:107955:2026-11-24", "1690000000", 2, values={"walk:x": "complete"})
    state.reserve_credit(NOW.date(), "/post-detail/", None, cost=3)
    state.cache_user_id("Alice123", ALICE_ID)
    LegalHolds(state).place("tiklive-raw/2026/11/", f"case {tag}", who="test")
    research = ResearchState(state)
    research.reserve(NOW.date(), 1000)
    research.save_window(WindowProgress("q1", "20261101-20261130", search_id="s1", next_cursor=100, pages=1))


def dump(state: StateDB) -> dict[str, list[tuple]]:
    """Every row of every state table, as a snapshot writes it, in a stable order."""

    def read(access) -> dict[str, list[tuple]]:
        out = {}
        for table in access.existing(state_tables()):
            rows = access.rows(table, access.columns(table))
            out[table] = sorted((tuple(sorted(row.items())) for row in rows), key=repr)
        return out

    return read_consistently(state, read)


def test_a_snapshot_restores_every_table_on_sqlite(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        fill(state)
        before = dump(state)
        manifest = take_snapshot(state, store, scratch=tmp_path / "tmp", now=NOW)

    assert set(before) == set(state_tables())  # the Research tables too
    assert all(before[t] for t in ("archive_queue", "cursor_history", "kv", "claim_owners", "research_windows"))
    name = snapshot_name(NOW)
    assert manifest["name"] == name and manifest["schema_version"] >= 1
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == {t: len(r) for t, r in before.items()}
    keys = {info.key for info in store.list(PREFIX)}
    assert keys == {f"{PREFIX}{name}/{t}.jsonl.gz" for t in before} | {f"{PREFIX}{name}/{MANIFEST}"}
    lines = gzip.decompress(store.get_bytes(f"{PREFIX}{name}/archive_queue.jsonl.gz")).decode().splitlines()
    assert {json.loads(line)["aweme_id"] for line in lines} == {"1001", "1011", "1021", "1031", "1041"}

    with StateDB.from_url(f"sqlite:///{tmp_path / 'restored.sqlite'}") as restored:
        report = restore_snapshot(restored, store, choose_snapshot(store), scratch=tmp_path / "tmp")
        assert report.rows == {t: len(r) for t, r in before.items()} and report.replaced == {}
        assert dump(restored) == before
        assert restored.state_of("1031") == "dead" and restored.cached_user_id("alice123") == ALICE_ID
        restored.set_cursor("user-posts:107955:2026-11-24", "1680000000", 3)  # ids go on after the restored ones
        assert [r.value for r in restored.cursor_history("user-posts:107955:2026-11-24")][:2] == [
            "1680000000",
            "1690000000",
        ]


def test_a_snapshot_reads_one_moment_while_others_write(tmp_path: Path):
    """Writes committed by another connection while the snapshot is being read are in none of its tables."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(url) as state, StateDB.from_url(url) as writer:
        fill(state)

        def write_meanwhile(message: str) -> None:
            if message.startswith("  read archive_queue"):  # the queue is read; dead letters and files are not yet
                writer.mark_dead("9999", "deleted meanwhile", 404)
                writer.record_file("9999", "cover", "covers/dt=2026-11-24/9999.jpg", None, 1, NOW.date())

        manifest = take_snapshot(state, store, now=NOW, progress=write_meanwhile)
        assert state.state_of("9999") == "dead"  # the write did commit
    rows = manifest["tables"]
    assert (rows["archive_queue"]["rows"], rows["dead_letter"]["rows"], rows["archived_files"]["rows"]) == (5, 1, 2)
    with StateDB.from_url(f"sqlite:///{tmp_path / 'restored.sqlite'}") as restored:
        restore_snapshot(restored, store, choose_snapshot(store))
        assert restored.dead_letter("9999") is None and restored.files_for("9999") == []


def test_postgres_round_trip_refusal_force_and_into_sqlite(
    postgres_url: str, moto_endpoint: str, s3_bucket: str, tmp_path: Path
):
    store = s3_store(s3_bucket, moto_endpoint).open()
    with StateDB.from_url(postgres_url) as state:
        fill(state)
        before = dump(state)
        take_snapshot(state, store, scratch=tmp_path, now=NOW)
        assert state.dialect == "postgres" and all(before[t] for t in ("archive_queue", "research_quota"))

        # the database changes: a restore refuses to replace it unless forced, and leaves it as it is
        state.enqueue([("5555", "hashtag:1001", None)])
        state.set_cursor("user-posts:107955:2026-11-24", "1", 9)
        changed = dump(state)
        with pytest.raises(StateNotEmpty, match="--force"):
            restore_snapshot(state, store, choose_snapshot(store))
        assert dump(state) == changed
        report = restore_snapshot(state, store, choose_snapshot(store), force=True, scratch=tmp_path)
        assert report.replaced["archive_queue"] == 6
        assert dump(state) == before
        state.set_cursor("user-posts:107955:2026-11-24", "2", 10)  # the identity column follows the restored ids
        assert state.cursor_history("user-posts:107955:2026-11-24")[0].value == "2"

    with StateDB.from_url(f"sqlite:///{tmp_path / 'from-postgres.sqlite'}") as sqlite_state:
        restore_snapshot(sqlite_state, store, choose_snapshot(store), scratch=tmp_path)
        assert dump(sqlite_state) == before  # the same rows on the other backend, timestamps and days alike


def test_a_sqlite_snapshot_restores_into_postgres(postgres_url: str, tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        fill(state)
        before = dump(state)
        take_snapshot(state, store, now=NOW)
    with StateDB.from_url(postgres_url) as pg:
        restore_snapshot(pg, store, choose_snapshot(store))
        assert dump(pg) == before
        assert pg.claim_pending(5) != []  # a restored queue works as a queue


def _snapshot_at(state: StateDB, store: LocalStore, when: datetime, value: str) -> str:
    state.set_value("marker", value)
    return str(take_snapshot(state, store, now=when)["name"])


def test_pruning_keeps_30_days_the_newest_and_held_snapshots(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        names = {age: _snapshot_at(state, store, NOW - timedelta(days=age), str(age)) for age in (40, 35, 31, 29, 0.1)}
        partial_old = snapshot_name(NOW - timedelta(days=2))  # interrupted snapshots: files, no manifest
        partial_new = snapshot_name(NOW - timedelta(minutes=10))
        for name in (partial_old, partial_new):
            store.put_bytes(f"{PREFIX}{name}/kv.jsonl.gz", gzip.compress(b""), content_type="application/gzip")
        LegalHolds(state).place(f"{PREFIX}{names[35]}/", "case 7", who="test")
        holds = LegalHolds(state).snapshot()
        report = prune_snapshots(store, now=NOW, held=lambda key: holds.covers(key) is not None)

        assert sorted(report.deleted) == sorted([names[40], names[31], partial_old])
        assert report.held == [names[35]]
        left = {s.name: s.complete for s in list_snapshots(store)}
        assert left == {names[35]: True, names[29]: True, names[0.1]: True, partial_new: False}

        # every complete snapshot expired: the newest one stays all the same
        later = NOW + timedelta(days=90)
        LegalHolds(state).release(f"{PREFIX}{names[35]}/")
        report = prune_snapshots(store, now=later)
        assert {s.name for s in list_snapshots(store)} == {names[0.1]}
        assert choose_snapshot(store).name == names[0.1]


def test_cli_restore_at_a_time_refuses_rows_and_skips_interrupted_snapshots(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        for hour in (1, 2, 3):
            _snapshot_at(state, store, NOW + timedelta(hours=hour), f"v{hour}")
        state.set_value("marker", "now")
    interrupted = snapshot_name(NOW + timedelta(hours=4))
    store.put_bytes(f"{PREFIX}{interrupted}/kv.jsonl.gz", gzip.compress(b""), content_type="application/gzip")
    home = ["--home", str(tmp_path)]

    assert cli_main(["state", "list", *home]) == 0
    shown = capsys.readouterr().out
    assert "4 snapshot(s), 3 complete" in shown and "INCOMPLETE" in shown

    assert cli_main(["state", "restore", "--at", "2026-11-24T14:30", *home]) == 1  # the database holds rows
    err = capsys.readouterr().err
    assert "already holds rows" in err and "--force" in err and "state.sqlite" in err
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        assert state.get_value("marker") == "now"

    assert cli_main(["state", "restore", "--at", "2026-11-24T14:30", "--force", *home]) == 0
    assert snapshot_name(NOW + timedelta(hours=2)) in capsys.readouterr().out
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        assert state.get_value("marker") == "v2"
    assert cli_main(["state", "restore", "--force", *home]) == 0  # the newest complete one, not the interrupted
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        assert state.get_value("marker") == "v3"
    assert cli_main(["state", "restore", "--at", "2026-11-23", *home]) == 1  # a bare day: its end, 23:59:59 UTC
    err = capsys.readouterr().err
    assert "no complete state snapshot taken at or before 2026-11-23 23:59:59 UTC" in err and "rebuild" in err
    assert cli_main(["state", "restore", "--at", "2026-11-24", "--force", *home]) == 0  # the day's snapshots count
    assert snapshot_name(NOW + timedelta(hours=3)) in capsys.readouterr().out


def test_a_forced_restore_keeps_holds_and_the_erasure_log_placed_after_the_snapshot(
    tmp_path: Path, monkeypatch, capsys
):
    """Holds and erasure-log entries written after the snapshot survive `restore --force` (the current value wins);
    the other kv rows are the snapshot's."""
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    store = LocalStore(tmp_path / "archive")
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with StateDB.from_url(url) as state:
        fill(state)  # a hold on tiklive-raw/2026/11/ ("case a")
        _snapshot_at(state, store, NOW, "then")
        state.set_value("marker", "now")
        holds = LegalHolds(state)
        holds.place("tiklive-raw/2026/12/", "case 9", who="test")
        holds.place("tiklive-raw/2026/11/", "case b", who="test")  # changed after the snapshot: the current wins
        KeySetTags(state).tag("legal-hold=case-9", ["videos/dt=2026-11-24/author=alice123/1021.mp4"])
        state.set_value("erasure-log:20261124T130000Z-r1", json.dumps({"request_id": "r1", "status": "finished"}))

    assert cli_main(["state", "restore", "--force", "--home", str(tmp_path)]) == 0
    assert "kept 4 legal-hold and erasure-log row(s)" in capsys.readouterr().out
    with StateDB.from_url(url) as state:
        assert state.get_value("marker") == "then"  # the snapshot's kv otherwise
        held = {h.prefix: h.reason for h in LegalHolds(state).list()}
        assert held == {"tiklive-raw/2026/11/": "case b", "tiklive-raw/2026/12/": "case 9"}
        assert LegalHolds(state).snapshot().covers("tiklive-raw/2026/12/01/x.json") is not None
        assert [e["request_id"] for e in erasure_log(state)] == ["r1"]
        assert KeySetTags(state).keys("legal-hold=case-9") == {"videos/dt=2026-11-24/author=alice123/1021.mp4"}


def _lose(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"state.sqlite{suffix}").unlink(missing_ok=True)


def test_after_losing_the_state_a_rebuild_then_a_run_pays_for_no_archived_video(tmp_path: Path, monkeypatch):
    """Capture a day (one video deleted: a dead letter), delete state.sqlite, rebuild from the archive, and capture
    the next day: the same listings are walked again, yet no video already archived (nor the dead one, nor the
    account's user id) is paid for again."""
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    real_datetime = capture_assets.datetime

    class Yesterday(real_datetime):  # the first day is captured on its own day, yesterday
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) - timedelta(days=1)

    yesterday = today() - timedelta(days=1)
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, local_store(tmp_path))
        monkeypatch.setattr(capture_assets, "datetime", Yesterday)
        assert rig.run(account_profiles, discovery_queue, partition=yesterday).success
        queued = rig.ids_in("pending")
        gone = min(queued)
        sb.delete_video(gone)
        first = rig.run(partition=yesterday)
        assert first.success, failures(first)
        day_one = sb.stats()
        archived = queued - {gone}
        assert day_one["detail_requests_by_id"] == {aweme_id: 1 for aweme_id in queued}
        assert rig.ids_in("downloaded") == archived
        files_before = {}
        with rig.state() as state:
            for aweme_id in archived:
                files_before[aweme_id] = {(f.kind, f.storage_key, f.size) for f in state.files_for(aweme_id)}

        _lose(tmp_path)
        rebuild = ["state", "rebuild", "--home", str(tmp_path), "--from", str(yesterday)]
        assert cli_main(rebuild) == 0
        assert rig.queue() == {**{aweme_id: "downloaded" for aweme_id in archived}, gone: "dead"}
        with rig.state() as state:
            letter = state.dead_letter(gone)
            assert letter is not None and letter.http_status == 404 and letter.reason == "video not found (deleted)"
            for aweme_id in archived:
                assert {(f.kind, f.storage_key, f.size) for f in state.files_for(aweme_id)} == files_before[aweme_id]
            assert state.cached_user_id("alice123") == ALICE_ID
        assert cli_main(rebuild) == 0  # idempotent
        assert rig.queue() == {**{aweme_id: "downloaded" for aweme_id in archived}, gone: "dead"}

        # the next day (today): the API serves the same listings (frozen corpus), discovery walks them again
        monkeypatch.setattr(capture_assets, "datetime", real_datetime)
        second = rig.run()
        assert second.success, failures(second)
        day_two = sb.stats()
        assert day_two["by_endpoint"]["/user-posts/"] > day_one["by_endpoint"]["/user-posts/"]  # walked again
        for aweme_id in queued:  # not one more detail credit for a video archived (or dead) the day before
            assert day_two["detail_requests_by_id"][aweme_id] == 1, aweme_id
        assert day_two["by_endpoint"].get("/userid/") == day_one["by_endpoint"].get("/userid/")
        new_details = {a: n for a, n in day_two["detail_requests_by_id"].items() if a not in queued}
        with rig.state() as state:  # the ledger agrees: what it paid for details is only the videos new today
            assert state.credits_spent(datetime.now(UTC).date()).get("/post-detail/", 0) == sum(new_details.values())


def test_a_restore_then_a_rebuild_adds_what_was_archived_after_the_snapshot(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    home = ["--home", str(tmp_path)]
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, local_store(tmp_path))
        assert rig.run(account_profiles, discovery_queue).success
        queued = rig.ids_in("pending")
        assert cli_main(["state", "snapshot", *home]) == 0  # ids queued, none downloaded yet
        assert rig.run().success
        downloaded = rig.ids_in("downloaded")
        assert downloaded == queued
        _lose(tmp_path)
        assert cli_main(["state", "restore", *home]) == 0
        assert set(rig.queue().values()) == {"pending"}
        assert cli_main(["state", "rebuild", *home, "--from", str(today())]) == 0
        assert rig.ids_in("downloaded") == downloaded
        before = sb.stats()
        assert rig.run().success  # the same day again: nothing left to pay for
        assert sb.stats()["detail_requests_by_id"] == before["detail_requests_by_id"]


def test_the_hourly_job_snapshots_and_prunes(tmp_path: Path):
    import dagster as dg

    from tiklive_assets.defs.backups.jobs import hourly_state_snapshot_schedule, state_snapshot
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource

    store = LocalStore(tmp_path / "archive")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        fill(state)
        old = _snapshot_at(state, store, datetime.now(UTC) - timedelta(days=31), "old")
        before = dump(state)
    result = state_snapshot.execute_in_process(
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
            "data_root": DataRootResource(home=str(tmp_path)),
        }
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: getattr(v, "value", v) for k, v in output.step_output_data.metadata.items()}
    assert metadata["rows"] == sum(len(rows) for rows in before.values()) and metadata["pruned"] == 1
    [snap] = list_snapshots(store)
    assert snap.complete and snap.name != old and metadata["snapshot"] == snap.prefix
    with StateDB.from_url(f"sqlite:///{tmp_path / 'restored.sqlite'}") as restored:
        restore_snapshot(restored, store, snap)
        assert dump(restored) == before

    when = datetime(2026, 11, 25, 7, 45, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=when) as context:
        request = hourly_state_snapshot_schedule.evaluate_tick(context).run_requests[0]
    assert request.run_key == "state-snapshot-2026-11-25T07"
