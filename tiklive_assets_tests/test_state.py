"""Tests for tiklive_assets.state on both backends: embedded sqlite (WAL) and real Postgres."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from tiklive_assets.state import CreditBudgetExhausted, CursorRecord, StateDB
from tiklive_assets.state.db import utcnow

DAY = date(2026, 11, 24)


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(state_url):
    state = StateDB.from_url(state_url)
    try:
        yield state
    finally:
        state.close()


# -- helpers for the cross-process test (module level so 'spawn' children can import them) -------
def _reserve_worker(url: str, attempts: int, budget: int, go, results) -> None:
    state = StateDB.from_url(url)
    ok = refused = 0
    state.migrate()  # connect before the race starts
    go.wait(60)  # a Barrier shared by both processes: start together
    try:
        for i in range(attempts):
            try:
                state.reserve_credit(DAY, f"ep{i % 3}", budget)
                ok += 1
            except CreditBudgetExhausted:
                refused += 1
            time.sleep(0.001)  # give the other process a turn at the lock
    finally:
        state.close()
    results.put((ok, refused))


def _run_threads(n: int, target) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            target(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


# -- basics ---------------------------------------------------------------------------------------
def test_nothing_connects_until_used_and_migrate_is_idempotent(state_url):
    state = StateDB.from_url(state_url)
    state.close()  # never used: nothing to close
    state.migrate()
    state.migrate()
    assert state.queue_depth() == {"pending": 0, "resolved": 0, "downloaded": 0, "dead": 0}
    state.close()
    # a second object on the same database migrates lazily and sees the same data
    other = StateDB.from_url(state_url)
    assert other.enqueue([("1", "s", None)]) == 1
    assert StateDB.from_url(state_url).state_of("1") == "pending"
    other.close()


def test_bad_urls_are_rejected():
    with pytest.raises(ValueError):
        StateDB.from_url("mysql://x")
    with pytest.raises(ValueError):
        StateDB.from_url("sqlite:///:memory:")


# -- queue ----------------------------------------------------------------------------------------
def test_enqueue_dedups_and_counts_only_new(db):
    assert (
        db.enqueue([("100", "user-posts", "alice"), ("100", "search-video", None), ("101", "user-posts", "alice")]) == 2
    )
    assert db.enqueue([("100", "music-posts", "bob"), ("102", "challenge-posts", None)]) == 1
    assert db.enqueue([]) == 0
    depth = db.queue_depth()
    assert depth == {"pending": 3, "resolved": 0, "downloaded": 0, "dead": 0}
    first = db.pending(10)
    assert [i.aweme_id for i in first][0] == "100"
    item = next(i for i in first if i.aweme_id == "100")
    assert (item.source, item.author_handle, item.state, item.attempts) == ("user-posts", "alice", "pending", 0)
    assert db.known(["100", "102", "999"]) == {"100", "102"}


def test_enqueue_thousands_in_batches(db):
    ids = [(str(7_000_000_000 + i), "user-posts", None) for i in range(2_345)]
    assert db.enqueue(ids) == 2_345
    assert db.enqueue(ids[:1_000] + [("new-one", "search-video", None)]) == 1
    assert db.queue_depth()["pending"] == 2_346
    assert len(db.known(i for i, _, _ in ids)) == 2_345


def test_pending_is_oldest_first(db):
    db.enqueue([("b", "s", None)])
    db.enqueue([("a", "s", None)])
    assert [i.aweme_id for i in db.pending(2)] == ["b", "a"]
    assert [i.aweme_id for i in db.pending(1)] == ["b"]


def test_claim_increments_attempts_and_leases(db):
    db.enqueue([(str(i), "s", None) for i in range(5)])
    claimed = db.claim_pending(3)
    assert len(claimed) == 3 and all(i.attempts == 1 for i in claimed)
    # claimed rows are leased: the next claim gets the rest, then nothing
    rest = db.claim_pending(10)
    assert {i.aweme_id for i in rest} == {str(i) for i in range(5)} - {i.aweme_id for i in claimed}
    assert db.claim_pending(10) == []
    # releasing makes a row claimable again, with attempts counted
    assert db.release(claimed[0].aweme_id)
    again = db.claim_pending(10)
    assert [(i.aweme_id, i.attempts) for i in again] == [(claimed[0].aweme_id, 2)]
    # an expired lease is claimable again too
    assert db.claim_pending(10, lease=timedelta(0)) == []
    db.enqueue([("x", "s", None)])
    assert [i.aweme_id for i in db.claim_pending(10, lease=timedelta(seconds=-1))] == ["x"]
    assert [(i.aweme_id, i.attempts) for i in db.claim_pending(10)] == [("x", 2)]


def test_concurrent_claimers_never_share_an_id(db, state_url):
    n_ids = 300
    db.enqueue([(f"v{i:04d}", "s", None) for i in range(n_ids)])
    other = StateDB.from_url(state_url)  # a second handle: separate connections, like another process
    got: list[list[str]] = [[] for _ in range(6)]

    def claimer(k: int) -> None:
        state = db if k % 2 else other
        while True:
            batch = state.claim_pending(7)
            if not batch:
                return
            got[k].extend(i.aweme_id for i in batch)
            time.sleep(0.002)  # let the other claimers in

    try:
        _run_threads(6, claimer)
    finally:
        other.close()
    everything = [a for ids in got for a in ids]
    assert len(everything) == n_ids
    assert len(set(everything)) == n_ids
    assert sum(1 for ids in got if ids) >= 2  # really concurrent
    assert {i.attempts for i in db.pending(n_ids)} == {1}


def test_state_transitions_and_queue_depth(db):
    db.enqueue([("1", "s", None), ("2", "s", None), ("3", "s", None), ("4", "s", None)])
    assert db.mark_resolved("1", "alice")
    assert db.mark_resolved("2", None)
    assert db.mark_downloaded("2")
    assert db.mark_dead("3", "deleted", 404)
    assert db.state_of("1") == "resolved"
    assert db.state_of("2") == "downloaded"
    assert db.state_of("3") == "dead"
    assert db.state_of("nope") is None
    assert db.queue_depth() == {"pending": 1, "resolved": 1, "downloaded": 1, "dead": 1}
    assert next(i for i in db.claim_pending(5, state="resolved")).author_handle == "alice"
    # downloaded rows do not go back to resolved; dead rows are not downloaded
    assert not db.mark_resolved("2", "x")
    assert not db.mark_downloaded("3")
    assert db.state_of("2") == "downloaded"


def test_mark_dead_writes_dead_letter_once_and_stops_pending(db):
    db.enqueue([("1", "s", None), ("2", "s", None)])
    assert db.mark_dead("1", "private account", 403) is True
    assert db.mark_dead("1", "other reason", 500) is False  # idempotent: first reason kept
    letter = db.dead_letter("1")
    assert (letter.reason, letter.http_status) == ("private account", 403)
    assert db.dead_letters_by_reason() == {"private account": 1}
    assert [i.aweme_id for i in db.pending(10)] == ["2"]
    assert [i.aweme_id for i in db.claim_pending(10)] == ["2"]
    assert db.enqueue([("1", "search-video", None)]) == 0  # never re-queued
    assert db.state_of("1") == "dead"
    # an id never queued can be dead-lettered too, and then cannot be enqueued
    assert db.mark_dead("9", "not found", None)
    assert db.enqueue([("9", "user-posts", None)]) == 0
    assert db.dead_letters_by_reason() == {"private account": 1, "not found": 1}
    assert db.dead_letters_by_reason(since=datetime.now(UTC) + timedelta(hours=1)) == {}
    # operator requeue
    assert db.requeue("1")
    assert db.state_of("1") == "pending" and db.dead_letter("1") is None


def test_age_out_dead_letters(db):
    db.enqueue([("1", "s", None), ("2", "s", None)])
    db.mark_dead("1", "deleted", 404)
    db.mark_dead("2", "region-locked", 451)
    assert db.age_out_dead_letters(timedelta(days=1)) == 0
    assert db.dead_letters_by_reason() == {"deleted": 1, "region-locked": 1}
    assert db.age_out_dead_letters(timedelta(seconds=-1)) == 2
    assert db.dead_letters_by_reason() == {}
    assert db.state_of("1") == "dead"  # the queue row still blocks re-queueing
    assert db.enqueue([("1", "s", None)]) == 0


# -- files ----------------------------------------------------------------------------------------
def test_record_file_upserts(db):
    db.record_file("1", "video", "videos/dt=2026-11-24/author=a/1.mp4", "ab" * 32, 1234, DAY)
    db.record_file("1", "cover", "covers/dt=2026-11-24/1.jpg", None, 55, "2026-11-24")
    db.record_file("1", "video", "videos/dt=2026-11-25/author=a/1.mp4", "cd" * 32, 4321, date(2026, 11, 25))
    files = {f.kind: f for f in db.files_for("1")}
    assert set(files) == {"video", "cover"}
    assert files["video"].storage_key.endswith("dt=2026-11-25/author=a/1.mp4")
    assert (files["video"].size, files["video"].sha256, files["video"].ingest_date) == (
        4321,
        "cd" * 32,
        date(2026, 11, 25),
    )
    assert files["cover"].ingest_date == DAY
    assert files["cover"].recorded_at.tzinfo is not None
    assert db.files_for("2") == []
    with pytest.raises(ValueError):
        db.record_file("1", "audio", "k", None, 1, DAY)


# -- cursors --------------------------------------------------------------------------------------
def test_cursor_set_get_history_delete(db):
    scope = "user-posts:107955:2026-11-24"
    assert db.get_cursor(scope) is None
    before = datetime.now(UTC) - timedelta(seconds=5)
    for page, value in enumerate(["0", "1732406400000", "1732320000000"], start=1):
        db.set_cursor(scope, value, page)
    db.set_cursor("user-followers:107955:2026-11-24", 1732406400, 1)
    cur = db.get_cursor(scope)
    assert (cur.scope, cur.value, cur.pages) == (scope, "1732320000000", 3)
    assert before <= cur.updated_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert db.get_cursor("user-followers:107955:2026-11-24").value == "1732406400"
    history = db.cursor_history(scope)
    assert [(h.value, h.pages) for h in history] == [("1732320000000", 3), ("1732406400000", 2), ("0", 1)]
    assert len(db.cursor_history(scope, limit=2)) == 2
    assert [c.scope for c in db.list_cursors("user-posts:")] == [scope]
    assert [c.scope for c in db.list_cursors()] == sorted([scope, "user-followers:107955:2026-11-24"])
    assert db.list_cursors("user_posts") == []  # prefix is literal, not a LIKE pattern
    # operator reset to a known-good value, then delete
    good = history[1]
    db.set_cursor(scope, good.value, good.pages)
    assert db.get_cursor(scope).value == "1732406400000"
    assert db.delete_cursor(scope) is True
    assert db.delete_cursor(scope) is False
    assert db.get_cursor(scope) is None
    assert len(db.cursor_history(scope, limit=100)) == 4  # history survives the delete
    assert db.prune_cursor_history(keep=1) == 3
    assert [h.value for h in db.cursor_history(scope)] == ["1732406400000"]
    assert isinstance(db.list_cursors()[0], CursorRecord)


# -- credits --------------------------------------------------------------------------------------
def test_reserve_credit_basics(db):
    assert db.reserve_credit(DAY, "/post-detail/", 3) == 1
    assert db.reserve_credit(DAY, "/user-posts/", 3) == 2
    assert db.reserve_credit(DAY, "/post-detail/", 3) == 3
    with pytest.raises(CreditBudgetExhausted) as info:
        db.reserve_credit(DAY, "/userid/", 3)
    exc = info.value
    assert (exc.day, exc.spent, exc.budget) == (DAY, 3, 3)
    assert str(exc).startswith("daily credit budget of 3 reached for 2026-11-24: 3 credits spent; ")
    assert "daily_credit_budget" in str(exc)
    assert pickle.loads(pickle.dumps(exc)).spent == 3
    assert db.credits_spent(DAY) == {"/post-detail/": 2, "/user-posts/": 1}
    # another day has its own budget; None means unlimited
    assert db.reserve_credit(DAY + timedelta(days=1), "/userid/", 3) == 1
    assert db.reserve_credit(DAY, "/userid/", None) == 4
    assert db.credits_spent(date(2020, 1, 1)) == {}


def test_reserve_credit_stops_exactly_at_budget_under_threads(db):
    budget = 137
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def reserve(k: int) -> None:
        for _ in range(50):
            try:
                db.reserve_credit(DAY, f"/ep{k % 3}/", budget)
                result = "ok"
            except CreditBudgetExhausted:
                result = "refused"
            with lock:
                outcomes[result] += 1

    _run_threads(8, reserve)
    assert outcomes == {"ok": budget, "refused": 8 * 50 - budget}
    assert sum(db.credits_spent(DAY).values()) == budget


def test_reserve_credit_stops_exactly_at_budget_across_processes(db, state_url):
    budget = 137
    db.migrate()  # create the schema before the race
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=_reserve_worker, args=(state_url, 120, budget, go, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    print("per-process (ok, refused):", outcomes)
    assert sum(ok for ok, _ in outcomes) == budget
    assert sum(refused for _, refused in outcomes) == 2 * 120 - budget
    assert sum(db.credits_spent(DAY).values()) == budget


# -- user ids and kv ------------------------------------------------------------------------------
def test_user_id_cache(db):
    assert db.cached_user_id("cristiano") is None
    db.cache_user_id("@Cristiano", "107955")
    assert db.cached_user_id("cristiano") == "107955"
    assert db.cached_user_id("CRISTIANO") == "107955"
    db.cache_user_id("cristiano", 107956)
    assert db.cached_user_id("@cristiano") == "107956"
    assert db.cached_user_id("cristiano", max_age=timedelta(days=1)) == "107956"
    assert db.cached_user_id("cristiano", max_age=timedelta(seconds=-1)) is None


def test_kv(db):
    assert db.get_value("complete:2026-11-24") is None
    assert db.get_value("complete:2026-11-24", "no") == "no"
    db.set_value("complete:2026-11-24", "1")
    db.set_value("complete:2026-11-24", "2")
    assert db.get_value("complete:2026-11-24") == "2"
    assert db.delete_value("complete:2026-11-24")
    assert db.get_value("complete:2026-11-24") is None


# ------------------------------------------------------------------------------------------------
# claims with owners and heartbeats (issue 10)
# ------------------------------------------------------------------------------------------------
def _owner(db, *, beat: float = 10.0, pid: int | None = None, host_key: str | None = None):
    import dataclasses

    from tiklive_assets.state import ClaimOwner

    owner = ClaimOwner.this_process(None, beat)
    if pid is not None or host_key is not None:
        owner = dataclasses.replace(
            owner, pid=pid if pid is not None else owner.pid, pid_start=None, host_key=host_key or owner.host_key
        )
    db.register_owner(owner)
    return owner


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no such process (pids are not reused this fast)


def test_a_live_owners_claims_are_never_taken_even_past_their_lease(db):
    db.enqueue([("1", "s", None), ("2", "s", None)])
    live = _owner(db)
    assert {i.aweme_id for i in db.claim_pending(5, lease=timedelta(seconds=-1), owner=live)} == {"1", "2"}
    other = _owner(db)
    assert db.expire_dead_owners() == []  # this very process: alive
    assert db.claim_pending(5, owner=other) == []  # the lease has passed, the owner heartbeats: still held
    assert db.claim_held("1", live) and not db.claim_held("1", other)


def test_a_dead_local_owners_claims_are_taken_at_once(db):
    db.enqueue([("1", "s", None)])
    dead = _owner(db, pid=_dead_pid())
    assert [i.aweme_id for i in db.claim_pending(5, owner=dead)] == ["1"]
    rerun = _owner(db)
    assert db.claim_pending(5, owner=rerun) == []  # before the reaper runs, the dead owner looks live
    assert db.expire_dead_owners() == [dead.owner_id]
    [item] = db.claim_pending(5, owner=rerun)
    assert item.aweme_id == "1" and item.attempts == 2  # the killed attempt counts (a poison pill ends dead)
    statuses = {s.owner_id: s for s in db.owner_statuses()}
    assert not statuses[dead.owner_id].alive and statuses[rerun.owner_id].claims == 1


def test_an_owner_elsewhere_loses_its_claims_only_after_missed_heartbeats(db):
    import time

    db.enqueue([("1", "s", None)])
    remote = _owner(db, beat=0.2, pid=_dead_pid(), host_key="another-host|boot|ns")
    db.claim_pending(1, owner=remote)
    mine = _owner(db)
    assert db.expire_dead_owners() == []  # another host's pid says nothing here
    assert db.claim_pending(1, owner=mine) == []
    assert db.heartbeat(remote)  # renewed in time
    time.sleep(0.7)  # 3 missed beats of 0.2 s
    assert [i.aweme_id for i in db.claim_pending(1, owner=mine)] == ["1"]
    assert not db.heartbeat(remote)  # it learns its claims lapsed


def test_heartbeat_renews_leases_and_end_owner_releases(db):
    db.enqueue([("1", "s", None)])
    owner = _owner(db)
    db.claim_pending(1, lease=timedelta(seconds=5), owner=owner)
    assert db.heartbeat(owner, lease=timedelta(hours=1))
    assert db.end_owner(owner) == 1
    assert db.state_of("1") == "pending" and db.claim_pending(1, owner=_owner(db))


def test_left_behind_says_who_holds_what(db):
    db.enqueue([("1", "s", None), ("2", "s", None), ("3", "s", None)])
    owner = _owner(db)
    db.claim_pending(1, owner=owner)
    db.note_failure("2", "DownloadFailed: CDN answered HTTP 500")
    total, items = db.left_behind()
    by_id = {i.aweme_id: i for i in items}
    assert total == 3 and by_id["1"].owner_alive and by_id["2"].last_error.startswith("DownloadFailed")
    assert by_id["3"].owner_alive is None


def test_record_listing_page_commits_ids_cursor_count_and_end_together(db):
    scope = "challenge-posts:1001:2026-05-29"
    first = db.record_listing_page(
        scope,
        [("1", "h", None), ("2", "h", "a")],
        next_cursor="30",
        pages=1,
        max_videos=3,
        last_page=False,
        stop_when_all_known=False,
        counter_key="enqueued:" + scope,
        complete_key="complete:" + scope,
    )
    assert (first.new, first.enqueued_today, first.complete) == (2, 2, False)
    second = db.record_listing_page(
        scope,
        [("2", "h", None), ("3", "h", None), ("4", "h", None)],
        next_cursor="60",
        pages=2,
        max_videos=3,
        last_page=False,
        stop_when_all_known=False,
        counter_key="enqueued:" + scope,
        complete_key="complete:" + scope,
    )
    assert (second.new, second.enqueued_today, second.complete) == (1, 3, True)  # the day's allowance reached
    assert db.get_cursor(scope).value == "60" and db.get_value("enqueued:" + scope) == "3"
    assert db.get_value("complete:" + scope) == "1" and db.known(["4"]) == set()


def test_record_listing_page_rolls_back_as_a_whole(db):
    scope = "user-posts:1:2026-05-29"
    with pytest.raises(ValueError):
        db.record_listing_page(
            scope,
            [("1", "h", None), (" ", "h", None)],
            next_cursor="30",
            pages=1,
            max_videos=9,
            last_page=True,
            stop_when_all_known=False,
            counter_key="enqueued:" + scope,
            complete_key="complete:" + scope,
        )
    assert db.known(["1"]) == set() and db.get_cursor(scope) is None and db.get_value("complete:" + scope) is None


def test_set_cursor_writes_its_markers_in_the_same_transaction(db):
    db.set_value("replies-pending:x", "0")
    db.set_cursor("x", "50", 1, values={"walked:x": "1", "replies-pending:x": None})
    assert db.get_value("walked:x") == "1" and db.get_value("replies-pending:x") is None


def test_a_state_database_from_before_owners_is_migrated_by_adding_columns(state_url):
    """An archive_queue without claim_owner/last_error (the previous release) gains them; its rows and leases stay."""
    from tiklive_assets.state.schema import ddl_for

    old = StateDB.from_url(state_url)
    with old._backend.transaction(write=True) as tx:
        for stmt in ddl_for(old.dialect)[:2]:  # archive_queue as the previous release created it, and its index
            tx.execute(stmt)
        tx.execute(
            "INSERT INTO archive_queue (aweme_id, source, state, attempts, lease_until, added_at, updated_at) "
            "VALUES ('1', 's', 'pending', 1, ?, ?, ?)",
            [utcnow() + timedelta(hours=1), utcnow(), utcnow()],
        )
    old.close()
    with StateDB.from_url(state_url) as db:
        assert db.claim_pending(1, owner=_owner(db)) == []  # the old lease (no owner) still holds
        total, [item] = db.left_behind()
        assert item.aweme_id == "1" and item.owner_alive is True and item.last_error is None
        db.release("1")
        assert [i.aweme_id for i in db.claim_pending(1, owner=_owner(db))] == ["1"]
        db.migrate()  # idempotent


def test_only_a_numeric_user_id_is_cached_and_a_cached_one_can_be_forgotten(tmp_path):
    from tiklive_assets.state import StateDB

    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        for bad in ("None", "", "12a", True, "1" * 33):
            with pytest.raises(ValueError, match="1-32 digits"):
                state.cache_user_id("alice123", bad)
        assert state.cached_user_id("alice123") is None
        state.cache_user_id("@Alice123", 6800000000000000001)
        assert state.cached_user_id("alice123") == "6800000000000000001"
        assert state.forget_user_id("alice123") == "6800000000000000001"
        assert state.cached_user_id("alice123") is None and state.forget_user_id("alice123") is None


def test_a_bad_state_url_is_reported_without_its_password():
    from tiklive_assets.state.backends import backend_from_url

    with pytest.raises(ValueError, match="TIKLIVE_STATE_URL") as info:
        backend_from_url("postgresq://user:s3cret-pass@db.example/tiklive")
    assert "s3cret-pass" not in str(info.value) and "user:***@db.example" in str(info.value)
