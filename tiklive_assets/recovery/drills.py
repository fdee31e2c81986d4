"""The recovery drills: each stages one disaster on a scratch copy, recovers the way the runbook says, checks the
outcome and measures the recovery time. "A backup you have never restored is a rumour"; so is a runbook.

* ``warehouse-lost``: capture today, snapshot, capture a new hashtag, delete the warehouse, ``restore-warehouse``
  (the snapshot, then the day it was taken on, still open then, replayed); every table holds the same rows as before.
* ``state-lost``: capture a day, delete the state database, ``tiklive state rebuild`` from the archive alone, run the
  next day; no video already archived is resolved (paid for) again.
* ``key-revoked``: the sandbox rejects the key mid-run; the run stops cleanly with the key-rotation instructions and
  every answer already paid for is archived; with a new key, ``tiklive check-key`` accepts it and a rerun completes.
* ``pipeline-drift``: after a day in the documented shapes, the sandbox answers in drifted shapes (and one profile
  in a shape no parser reads); the drift is reported, that object quarantined and kept, and the day loads.

The API serves only the present, so a drill that needs an earlier day captures today and moves that capture one day
back in the scratch archive (:meth:`Scratch.move_day_back`). A drill passes when every check holds; otherwise it
says what failed and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from secrets import token_hex

from tiklive_assets.sandbox.realism import Realism
from tiklive_assets.storage.keys import is_conflict_key, split_raw_key
from tiklive_assets.tikliveapi.endpoints import POST_DETAIL, USERINFO_BY_ID
from tiklive_assets.warehouse import open_warehouse
from tiklive_assets.warehouse.drift import schema_drift
from tiklive_assets.warehouse.raw import raw_day_prefix
from tiklive_assets.warehouse.schema import TABLES

from .restore import restore_warehouse
from .scratch import Ran, Scratch, scratch
from .snapshots import take_snapshot

STATE_RECOVERY = ("state", "rebuild")  # the command that rebuilds a lost state database from the archive alone
REVOKE_AFTER = 6  # API requests accepted before the key is revoked: profiles and discovery pass, videos are refused
# a profile whose user id moved to a field no parser knows: data to the client, unreadable to the warehouse
DRIFTED_PROFILE = {"user": {"uid": "6800000000000000001", "uniqueId": "alice123"}, "stats": {}}


@dataclass
class DrillResult:
    name: str
    passed: bool = False
    headline: str = ""
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None
    seconds: float = 0.0


class _Stop(Exception):
    """A step the rest of the drill depends on failed (already recorded)."""


class Drill:
    """What a scenario reports through: its steps (printed as they happen), its checks and its recovery time."""

    def __init__(self, name: str, say: Callable[[str], None]) -> None:
        self.result = DrillResult(name)
        self.say = say

    def step(self, text: str) -> None:
        self.result.steps.append(text)
        self.say(f"  {text}")

    def check(self, ok: object, problem: str) -> bool:
        if not ok:
            self.result.problems.append(problem)
            self.say(f"  CHECK FAILED: {problem}")
        return bool(ok)

    def ran(self, ran: Ran, what: str, *, expect: int = 0) -> Ran:
        """Record a command; stop the drill when it did not exit ``expect``."""
        shown = " ".join(ran.args[:3])
        if ran.code != expect:
            self.check(False, f"`tiklive {shown}` exited {ran.code} (expected {expect}):\n{ran.tail()}")
            raise _Stop
        self.step(f"{what} (`tiklive {shown}`, exit {ran.code}, {ran.seconds:.1f}s)")
        return ran

    def recovered(self, seconds: float) -> None:
        self.result.recovery_seconds = seconds


def _today() -> date:
    return datetime.now(UTC).date()


def _tables(url: str) -> dict[str, tuple[int, str]]:
    """(rows, fingerprint) of every declared table the warehouse holds."""
    with open_warehouse(url, read_only=True) as wh:
        stored = {r[0] for r in wh.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema()")}
        return {t.name: (wh.row_count(t.name), wh.fingerprint(t.name)) for t in TABLES if t.name in stored}


def warehouse_lost(s: Scratch, d: Drill) -> None:
    today = _today()
    d.ran(s.run_day(today), f"captured {today}")
    manifest = take_snapshot(s.store, s.warehouse_url, scratch=s.home / "tmp")
    d.step(f"snapshot {manifest.snapshot_id}: {manifest.rows:,} rows, last day {manifest.last_day}")
    s.track(hashtags=["1001", "1002"])
    d.ran(s.run_day(today), "captured a new hashtag after the snapshot")
    before = _tables(s.warehouse_url)
    d.check(sum(n for n, _ in before.values()) > manifest.rows, "the capture after the snapshot added no row: no test")
    for path in (s.warehouse_path, s.warehouse_path.with_name(s.warehouse_path.name + ".wal")):
        path.unlink(missing_ok=True)
    d.step(f"deleted {s.warehouse_path.name} ({sum(n for n, _ in before.values()):,} rows in {len(before)} tables)")
    started = time.monotonic()
    report = restore_warehouse(s.store, s.warehouse_url, scratch=s.home / "tmp", say=d.step)
    d.recovered(time.monotonic() - started)
    after = _tables(s.warehouse_url)
    for name, (rows, fingerprint) in before.items():
        got = after.get(name, (0, ""))
        if d.check(got[0] == rows, f"{name}: {rows} rows before, {got[0]} after the restore"):
            d.check(got[1] == fingerprint, f"{name}: {rows} rows before and after, but other values")
    d.check(report.replayed == [today], f"replayed {report.replayed}; the snapshot was taken while {today} was open")
    d.step(f"row counts and values of {len(before)} tables as before the loss")


def _archived_videos(s: Scratch, day: date) -> set[str]:
    """The ids whose /post-detail/ answer is archived for ``day`` (paid for once already)."""
    ids = set()
    for info in s.store.list(raw_day_prefix(day) + POST_DETAIL.name + "/"):
        parts = split_raw_key(info.key)
        if parts is not None and not is_conflict_key(info.key) and parts.slug.isdigit():
            ids.add(parts.slug)
    return ids


def state_lost(s: Scratch, d: Drill) -> None:
    today = _today()
    d.ran(s.run_day(today), f"captured {today}")
    yesterday = s.move_day_back(today)
    archived = _archived_videos(s, yesterday)
    d.step(f"moved the capture to {yesterday} ({len(archived)} videos archived) and deleted {s.state_path.name}")
    started = time.monotonic()
    d.ran(s.tiklive(*STATE_RECOVERY, "--home", str(s.home)), "rebuilt the state database from the archive alone")
    d.recovered(time.monotonic() - started)
    s.sandbox.paid_details.clear()
    d.ran(s.run_day(today), f"ran {today}, whose listings show the same videos")
    resolved = dict(s.sandbox.paid_details)
    again = sorted(set(resolved) & archived)
    d.check(archived, f"nothing was archived on {yesterday}: the drill proves nothing")
    if d.check(not again, f"{len(again)} video(s) already archived were paid for again: {', '.join(again[:5])}"):
        d.step(f"{len(resolved)} new video(s) resolved on {today}, none of the {len(archived)} already archived")


def _raw_objects(s: Scratch) -> dict[str, bytes]:
    return {info.key: s.store.get_bytes(info.key) for info in s.store.list("tiklive-raw/")}


def key_revoked(s: Scratch, d: Drill) -> None:
    today = _today()
    new_key = f"rotated-{token_hex(8)}"
    s.sandbox.revoke_key_after(REVOKE_AFTER, new_key)
    ran = s.run_day(today)
    d.step(
        f"the sandbox revoked the key after {REVOKE_AFTER} requests; `tiklive run` exited {ran.code} "
        f"in {ran.seconds:.1f}s"
    )
    d.check(ran.code == 1, f"the run exited {ran.code}, not 1 (a failed step):\n{ran.tail()}")
    d.check("Traceback" not in ran.text, f"the run did not stop cleanly:\n{ran.tail()}")
    d.check(
        "rejected the API key" in ran.text and "tiklive check-key" in ran.text,
        f"the run did not say how to rotate the key:\n{ran.tail()}",
    )
    refused = [endpoint for _, endpoint, status in s.sandbox.arrivals() if status == 401]
    if d.check(refused, "the sandbox refused no request: the key was never revoked mid-run"):
        d.step(f"{len(refused)} request(s) refused, the first on {refused[0]}")
    kept = _raw_objects(s)
    paid = s.sandbox.answered(200, 404)
    d.check(len(kept) >= paid, f"{paid} answers were paid for before the revocation, only {len(kept)} archived")
    d.step(f"{paid} answers paid for before the revocation, {len(kept)} objects archived")
    started = time.monotonic()
    s.api_key = new_key
    d.ran(s.tiklive("check-key", "--config", str(s.config_path)), "rotated the key; the new one is accepted")
    rerun = d.ran(s.run_day(today), "reran the day with the new key")
    d.recovered(time.monotonic() - started)
    d.check("left in the queue: 0" in rerun.out, f"the rerun left videos in the queue:\n{rerun.tail()}")
    after = _raw_objects(s)
    lost = sorted(key for key, body in kept.items() if after.get(key) != body)
    d.check(not lost, f"{len(lost)} archived object(s) lost or changed by the rerun: {', '.join(lost[:3])}")
    twice = sorted(i for i, n in s.sandbox.paid_details.items() if n > 1)
    d.check(not twice, f"{len(twice)} video(s) resolved (paid for) twice: {', '.join(twice[:5])}")


def pipeline_drift(s: Scratch, d: Drill) -> None:
    today = _today()
    d.ran(s.run_day(today), f"captured {today} in the documented shapes")
    yesterday = s.move_day_back(today)
    d.ran(
        s.tiklive("replay", "--from", str(yesterday), "--to", str(yesterday), "--home", str(s.home)),
        f"moved it to {yesterday}, the baseline",
    )
    s.sandbox.realism = Realism(s.sandbox.config.seed)
    s.sandbox.fail_next(1, 200, body=DRIFTED_PROFILE, endpoint=USERINFO_BY_ID.path)
    d.step("the sandbox now answers in drifted shapes, and one profile in a shape no parser reads")
    ran = s.run_day(today)
    d.recovered(ran.seconds)
    d.check(ran.code == 0, f"the day failed (exit {ran.code}):\n{ran.tail()}")
    d.step(f"`tiklive run --date {today}` exited {ran.code} in {ran.seconds:.1f}s")
    with open_warehouse(s.warehouse_url, read_only=True) as wh:
        drifted = schema_drift(wh, today)
        quarantined = [key for (key,) in wh.query("SELECT source_key FROM quarantine WHERE dt = ?", [today])]
        posts = wh.query("SELECT count(*) FROM post_metrics_history WHERE dt = ?", [today])[0][0]
    d.check(drifted, "no schema drift was recorded against the day before")
    d.check("schema_drift" in ran.out, f"the run's summary did not report the drift:\n{ran.tail()}")
    d.step(f"drift reported for {len(drifted)} endpoint(s): {', '.join(e.endpoint for e in drifted)}")
    d.check(quarantined, "the unreadable profile was not quarantined")
    lost = [key for key in quarantined if not s.store.exists(key)]
    d.check(not lost, f"{len(lost)} quarantined object(s) missing from the archive: {', '.join(lost[:3])}")
    d.step(f"{len(quarantined)} object(s) quarantined and kept in the archive; {posts} video counter rows loaded")
    d.check(posts, f"nothing of {today} was loaded")


SCENARIOS: dict[str, tuple[Callable[[Scratch, Drill], None], str, str]] = {
    "warehouse-lost": (
        warehouse_lost,
        "the warehouse is deleted; restore the latest snapshot, then replay what was archived after it",
        "`tiklive dr restore-warehouse` failed or restored other rows: rebuild from the archive alone with "
        "`tiklive replay --from <first day> --to <today>`, then check the warehouse_snapshot job's runs",
    ),
    "state-lost": (
        state_lost,
        "the state database is deleted; rebuild it from the archive, then run the next day",
        "a lost state database would cost credits again: keep state snapshots (`tiklive state ...`) and check "
        "that `tiklive state rebuild` records every archived video",
    ),
    "key-revoked": (
        key_revoked,
        "the API rejects the key mid-run; rotate it and rerun",
        "rotate the key on your TikLiveAPI profile page, export TIKLIVE_API_KEY, `tiklive check-key`, then rerun; "
        "a run that crashed or lost paid answers is a bug to report",
    ),
    "pipeline-drift": (
        pipeline_drift,
        "the API changes its payload shapes; the drift is reported, the unreadable object quarantined",
        "read the schema_drift check's metadata and the quarantine table, fix the parser, then "
        "`tiklive replay --from <day> --to <day>` for the drifted days",
    ),
}


def run_drill(name: str, *, keep: bool = False, say: Callable[[str], None] = print) -> DrillResult:
    """Run one drill on a fresh scratch copy; print its steps through ``say`` and return what it found."""
    scenario, what, advice = SCENARIOS[name]
    drill = Drill(name, say)
    say(f"drill {name}: {what}")
    started = time.monotonic()
    try:
        with scratch(keep=keep, say=say) as s:
            scenario(s, drill)
    except _Stop:
        pass
    except Exception as exc:  # noqa: BLE001 - a drill reports what broke instead of raising it
        drill.check(False, f"{type(exc).__name__}: {exc}")
    result = drill.result
    result.seconds = time.monotonic() - started
    result.passed = not result.problems
    took = f"recovery took {result.recovery_seconds:.1f}s" if result.recovery_seconds is not None else "no recovery"
    if result.passed:
        result.headline = f"{took} (drill {result.seconds:.0f}s)"
        say(f"drill {name}: PASS, {result.headline}")
    else:
        result.headline = result.problems[0].splitlines()[0]
        say(f"drill {name}: FAIL ({len(result.problems)} problem(s)); what to do: {advice}")
    return result
