"""A live worker's claimed ids are never taken by another worker of the same host, and no claimed id is paid for
twice, on the real Postgres.

The interleaving these tests replay, as three `tiklive run` workers met it on a loaded machine: worker A claims an
id and sends its /post-detail/ request; A's heartbeat thread is late (CPU starvation, a stall, a wall-clock step), so
its owner's expiry passes although its process is alive; worker B's next claim took A's in-flight id (its answer not
yet recorded, so B found nothing archived) and paid for it a second time. Now a claimer vouches for every late owner
of its host whose process is provably alive, and the paying thread renews and re-checks its claim right before the
credit is reserved (after its rate-limit wait), so the id is bought once.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tiklive_assets.capture.session import StateCreditLedger
from tiklive_assets.sandbox import DEFAULT_API_KEY
from tiklive_assets.state import ClaimOwner, StateDB
from tiklive_assets.state.owners import process_alive
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tikliveapi.errors import VideoGone

DAY = datetime.now(UTC).date()


@pytest.fixture
def state(postgres_url: str) -> Iterator[StateDB]:
    with StateDB.from_url(postgres_url) as db:
        yield db


def _owner(**changes: object) -> ClaimOwner:
    return replace(ClaimOwner.this_process(heartbeat_seconds=5), **changes)


def _late(state: StateDB, owner: ClaimOwner) -> None:
    """What a starved heartbeat thread leaves: the owner's expiry already passed, its process alive."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    state._write("UPDATE claim_owners SET expires_at = ? WHERE owner_id = ?", [past, owner.owner_id])


def _claim_one(state: StateDB, owner: ClaimOwner) -> list[str]:
    return [item.aweme_id for item in state.claim_pending(5, owner=owner)]


def test_a_late_heartbeat_of_a_live_owner_on_this_host_keeps_its_ids(state: StateDB) -> None:
    state.enqueue([("7000000000000000001", "test", "alice")])
    a, b = _owner(), _owner()
    state.register_owner(a)
    state.register_owner(b)
    assert _claim_one(state, a) == ["7000000000000000001"]  # A claims, its request is on its way
    _late(state, a)  # A's heartbeat comes late: its expiry passed, but its process (this one) is alive
    assert _claim_one(state, b) == []  # B must not take the id A is paying for
    assert state.expire_dead_owners() == []  # A's process is alive: nothing to expire
    assert _claim_one(state, b) == []
    assert state.confirm_claim("7000000000000000001", a)  # A may pay for it: still its own, renewed
    assert not state.confirm_claim("7000000000000000001", b)
    assert state.heartbeat(a) is True  # vouched for: A did not lapse
    assert next(o for o in state.owner_statuses() if o.owner_id == a.owner_id).alive


def test_a_late_unit_owner_on_this_host_keeps_its_unit(state: StateDB) -> None:
    a, b = _owner(), _owner()
    state.register_owner(a)
    state.register_owner(b)
    assert state.claim_unit("user-posts:1", DAY, a).status == "mine"
    _late(state, a)
    assert state.claim_unit("user-posts:1", DAY, b).status == "held"
    assert state.confirm_unit("user-posts:1", DAY, a)
    assert not state.confirm_unit("user-posts:1", DAY, b)


def test_a_dead_owner_on_this_host_loses_its_ids_at_once(state: StateDB) -> None:
    state.enqueue([("7000000000000000002", "test", "bob")])
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, b = _owner(pid=gone.pid), _owner()
    state.register_owner(dead)
    state.register_owner(b)
    assert _claim_one(state, dead) == ["7000000000000000002"]
    _late(state, dead)  # late and gone: nobody vouches for it
    assert _claim_one(state, b) == ["7000000000000000002"]
    assert not state.confirm_claim("7000000000000000002", dead)  # its guard would refuse to pay


def test_a_zombie_is_dead() -> None:
    child = subprocess.Popen(["true"])
    try:
        for _ in range(200):  # exited but not reaped: still in the process table, as state Z
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert not process_alive(child.pid, None)
    finally:
        child.wait()


def test_a_silent_owner_on_another_host_is_refused_the_credit_once_its_id_is_taken(state: StateDB, sandbox) -> None:
    """Across hosts only the lease can decide; the owner that lost its id finds out right before paying, after its
    rate-limit wait, and sends nothing."""
    state.enqueue([("7000000000000000003", "test", "cristiano")])
    remote, b = _owner(host_key="another-host|boot|ns", host="another-host"), _owner()
    state.register_owner(remote)
    state.register_owner(b)
    assert _claim_one(state, remote) == ["7000000000000000003"]
    assert _claim_one(state, b) == []  # while it heartbeats, it holds the id
    _late(state, remote)  # silent for three heartbeats: presumed dead
    assert _claim_one(state, b) == ["7000000000000000003"]

    class Taken(Exception):
        pass

    ledger = StateCreditLedger(state, None)
    client = TikLiveClient(DEFAULT_API_KEY, sandbox.base_url, credit_ledger=ledger)

    def still_ours(owner: ClaimOwner) -> None:
        if not state.confirm_claim("7000000000000000003", owner):
            raise Taken

    with ledger.guard(lambda: still_ours(remote)), pytest.raises(Taken):
        client.post_detail("7000000000000000003", "cristiano")
    assert sandbox.stats()["api_requests"] == 0 and client.credits.total == 0  # nothing sent, nothing counted
    with ledger.guard(lambda: still_ours(b)), pytest.raises(VideoGone):  # the sandbox has no such video: a 404
        client.post_detail("7000000000000000003", "cristiano")
    assert sandbox.stats()["detail_requests_by_id"] == {"7000000000000000003": 1}
    client.close()


def test_a_release_frees_only_its_owners_claim(state: StateDB) -> None:
    state.enqueue([("7000000000000000004", "test", "dana")])
    a, b = _owner(host_key="another-host|boot|ns"), _owner()
    state.register_owner(a)
    state.register_owner(b)
    assert _claim_one(state, a) == ["7000000000000000004"]
    _late(state, a)
    assert _claim_one(state, b) == ["7000000000000000004"]  # a silent remote owner's id, taken over
    assert not state.release("7000000000000000004", refund_attempt=True, owner=a)  # a's stop frees nothing of b's
    assert state.claim_held("7000000000000000004", b)


def test_a_unit_finished_between_a_claimers_look_at_its_marker_and_its_claim_is_done(state: StateDB) -> None:
    """B looks for the unit's done marker, A finishes the unit and commits, B claims: B read no marker (its look came
    first), so only the claim itself can see that the unit is done. It did not, and B paid for the unit again."""
    a, b = _owner(), _owner()
    state.register_owner(a)
    state.register_owner(b)
    assert state.claim_unit("userinfo-by-id:alice123", DAY, a).status == "mine"
    state.finish_unit("userinfo-by-id:alice123", DAY, a)
    # B's look at the marker came before A's commit: the marker is not there for it
    state._write("DELETE FROM kv WHERE key = ?", ["complete:userinfo-by-id:alice123:" + DAY.isoformat()])
    assert state.claim_unit("userinfo-by-id:alice123", DAY, b).status == "done"
    assert not state.confirm_unit("userinfo-by-id:alice123", DAY, b)
    state.reopen_unit("userinfo-by-id:alice123", DAY)  # an operator's reset still makes it claimable
    assert state.claim_unit("userinfo-by-id:alice123", DAY, b).status == "mine"
