"""The TikTok Research API source, over real HTTP against the sandbox (pages 0.2 s apart instead of 10 s)."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests

from tiklive_assets.research.archive import ResearchArchive, parse_video_slug
from tiklive_assets.research.client import ResearchClient, build_query
from tiklive_assets.research.collect import CollectOptions, collect_users, collect_videos
from tiklive_assets.research.errors import AuthFailed, InvalidParams, MissingResearchCredentials
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.warehouse import build_rows, load_research_warehouse, videos_per_user
from tiklive_assets.research.windows import Window, pack_days, split_range
from tiklive_assets.sandbox import SandboxConfig, SandboxServer
from tiklive_assets.sandbox.research import DEFAULT_CLIENT_KEY, DEFAULT_CLIENT_SECRET, corpus_videos
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore

SERVER_INTERVAL = 0.2  # the sandbox's required gap between pages of one search (10 s on the real API)
PAUSE = 0.25  # the client's pause: a little above the server's rule
BACKOFF = 0.01  # the client's first retry backoff (seconds against the real API)
SEED_USERS = ["tagesschau", "zeitimbild", "20minuten"]
Q1 = (date(2024, 1, 1), date(2024, 3, 31))


@pytest.fixture
def sandbox_research():
    with SandboxServer(SandboxConfig()) as server:
        server.research.config.page_interval = SERVER_INTERVAL
        yield server


class Rig:
    """A state DB, a local archive and clients pointed at the sandbox, all under tmp_path."""

    def __init__(self, server: SandboxServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.db = StateDB.from_url(f"sqlite:///{tmp / 'state.sqlite'}")
        self.state = ResearchState(self.db)
        self.store = LocalStore(tmp / "archive")
        self.warehouse = tmp / "warehouse.duckdb"

    def ledger(self, daily_quota: int = 1000, run_cap: int | None = None) -> QuotaLedger:
        return QuotaLedger(self.state, daily_quota, run_cap, today=self.server.research.today)

    def client(self, ledger: QuotaLedger | None = None, archive: ResearchArchive | None = None) -> ResearchClient:
        return ResearchClient(
            DEFAULT_CLIENT_KEY,
            DEFAULT_CLIENT_SECRET,
            self.server.base_url,
            quota=ledger or self.ledger(),
            on_response=archive,
            backoff_initial=BACKOFF,
        )

    def collect(self, users=SEED_USERS, start=Q1[0], end=Q1[1], *, ledger=None, on_page=None, **options):
        ledger = ledger or self.ledger()
        archive = ResearchArchive(self.store, ledger.today())
        client = self.client(ledger, archive)
        report = collect_videos(
            client,
            archive,
            self.state,
            build_query(users),
            split_range(start, end),
            CollectOptions(pause=PAUSE, **options),
            on_page=on_page,
        )
        return report, client

    def load(self):
        return load_research_warehouse(self.store, self.warehouse)

    def ids(self) -> list[str]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return [r[0] for r in con.execute("SELECT id FROM research_videos").fetchall()]
        finally:
            con.close()


@pytest.fixture
def rig(sandbox_research, tmp_path):
    r = Rig(sandbox_research, tmp_path)
    yield r
    r.db.close()


def expected_ids(users, start, end, realism=False) -> set[str]:
    return {str(v.id) for u in users for v in corpus_videos(u, start, end, realism=realism)}


def floor(users, start, end) -> int:
    """Requests needed at best: one per window plus one per extra page of 100."""
    total = 0
    for w in split_range(start, end):
        n = len(expected_ids(users, w.start, w.end))
        total += max(1, math.ceil(n / 100))
    return total


def archived_video_ids(store: LocalStore) -> list[str]:
    """Every video id on every ok video-query page in the archive (duplicates kept)."""
    out = []
    for info in store.list("research-raw/"):
        if "/video-query/" in info.key and parse_video_slug(info.key.rsplit("/", 1)[1].removesuffix(".json.gz")):
            body = json.loads(gzip.decompress(store.get_bytes(info.key)))
            out.extend(str(v["id"]) for v in body["data"]["videos"])
    return out


# -- windows ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start,end",
    [
        (date(2024, 1, 1), date(2024, 12, 31)),  # a leap year
        (date(2023, 1, 1), date(2023, 12, 31)),
        (date(2024, 2, 1), date(2024, 3, 1)),  # 30 days over 29 February: exactly one window
        (date(2024, 1, 31), date(2024, 3, 31)),  # month ends
        (date(2023, 2, 28), date(2023, 3, 1)),
        (date(2024, 5, 5), date(2024, 5, 5)),
    ],
)
def test_windows_cover_every_day_once(start, end):
    windows = split_range(start, end)
    days = [d for w in windows for d in w.dates()]
    assert days == [start + timedelta(days=i) for i in range((end - start).days + 1)]
    assert all(1 <= w.days <= 30 for w in windows)
    assert all(b.start == a.end + timedelta(days=1) for a, b in zip(windows, windows[1:], strict=False))
    assert len(windows) == math.ceil(((end - start).days + 1) / 30)


def test_windows_for_the_seed_and_a_leap_year():
    assert [w.key for w in split_range(*Q1)] == [
        "20240101-20240130",
        "20240131-20240229",
        "20240301-20240330",
        "20240331-20240331",
    ]
    assert Window.from_key("20240131-20240229").days == 30
    assert len(split_range(date(2024, 1, 1), date(2024, 12, 31))) == 13


def test_pack_days_uses_as_few_windows_as_the_limit_allows():
    year = [date(2023, 1, 1) + timedelta(days=i) for i in range(365)]
    assert len(pack_days(reversed(year))) == 13
    assert pack_days(["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-01"]) == [
        Window(date(2024, 2, 28), date(2024, 3, 1))
    ]
    gap = pack_days(["2024-01-01", "2024-01-02", "2024-01-05"])
    assert [w.key for w in gap] == ["20240101-20240102", "20240105-20240105"]


# -- the seed's scenario -----------------------------------------------------------------------------------


def test_seed_003_three_months_every_video_exactly_once_at_the_floor(rig):
    report, client = rig.collect()
    assert report.complete and report.retries == 0 and report.restarts == 0
    want = expected_ids(SEED_USERS, *Q1)
    assert len(corpus_videos("20minuten", date(2024, 1, 1), date(2024, 1, 30))) > 100  # needs pagination
    assert Counter(archived_video_ids(rig.store)) == Counter({i: 1 for i in want})
    rig.load()
    ids = rig.ids()
    assert len(ids) == len(set(ids)) and set(ids) == want
    assert videos_per_user(rig.warehouse, *Q1, SEED_USERS) == {u: len(corpus_videos(u, *Q1)) for u in SEED_USERS}
    assert (
        client.meter.total == floor(SEED_USERS, *Q1) == rig.server.research.stats.requests["/v2/research/video/query/"]
    )
    assert rig.ledger().spent_today() == client.meter.total
    # a second run finds every window done: no request at all
    again, client2 = rig.collect()
    assert again.complete and client2.meter.total == 0


def test_window_boundaries_lose_and_repeat_nothing(rig):
    start, end = date(2024, 1, 15), date(2024, 4, 10)  # over 29 February and three month ends
    report, _ = rig.collect(["20minuten"], start, end)
    assert report.complete
    got = archived_video_ids(rig.store)
    assert len(got) == len(set(got))
    assert set(got) == expected_ids(["20minuten"], start, end)
    rig.load()
    con = duckdb.connect(str(rig.warehouse), read_only=True)
    dates = {r[0] for r in con.execute("SELECT DISTINCT create_date FROM research_videos").fetchall()}
    con.close()
    assert date(2024, 2, 29) in dates and date(2024, 1, 31) in dates and date(2024, 3, 31) in dates
    assert min(dates) >= start and max(dates) <= end


# -- pacing ----------------------------------------------------------------------------------------------


def test_the_server_measures_the_pause_between_pages(rig):
    report, _ = rig.collect(["20minuten"])
    stats = rig.server.research.stats
    assert report.complete and stats.pace_violations == 0
    assert len(stats.page_gaps) == report.pages - len(report.windows)  # every later page of a search is measured
    assert stats.page_gaps and min(g for _, g in stats.page_gaps) >= SERVER_INTERVAL


def test_pages_too_close_together_are_rejected(sandbox_research):
    token = requests.post(
        f"{sandbox_research.base_url}/v2/oauth/token/",
        data={
            "client_key": DEFAULT_CLIENT_KEY,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
    ).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    url = f"{sandbox_research.base_url}/v2/research/video/query/?fields=id,username"
    body = {"query": build_query(["20minuten"]), "max_count": 100, "start_date": "20240101", "end_date": "20240130"}
    first = requests.post(url, json=body, headers=headers).json()["data"]
    assert first["has_more"] and first["cursor"] == 100
    body.update(cursor=first["cursor"], search_id=first["search_id"])
    early = requests.post(url, json=body, headers=headers)
    assert early.status_code == 429 and early.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(early.json()["error"]) == {"code", "message", "log_id"}
    time.sleep(SERVER_INTERVAL)
    assert requests.post(url, json=body, headers=headers).json()["error"]["code"] == "ok"


# -- token ----------------------------------------------------------------------------------------------


def test_a_token_expiring_mid_run_is_refreshed(rig):
    rig.server.research.config.token_ttl_seconds = 0.6  # refreshed early, before it expires
    report, client = rig.collect(["20minuten"])
    assert report.complete and client.meter.token_requests >= 2
    assert rig.server.research.stats.codes["access_token_expired"] == 0


def test_an_expired_token_is_refreshed_once_on_access_token_expired(rig):
    expired = []

    def expire_once(window, page):
        if not expired:
            rig.server.research.expire_tokens()  # the server revokes it earlier than its expires_in said
            expired.append(window)

    report, client = rig.collect(["20minuten"], on_page=expire_once)
    assert report.complete
    assert rig.server.research.stats.codes["access_token_expired"] == 1
    assert client.meter.token_requests == 2
    rig.load()
    assert set(rig.ids()) == expected_ids(["20minuten"], *Q1)


def test_wrong_credentials_fail_without_showing_the_secret(rig, caplog):
    caplog.set_level(logging.DEBUG)
    client = ResearchClient(DEFAULT_CLIENT_KEY, "the-wrong-secret-123", rig.server.base_url)
    with pytest.raises(AuthFailed) as info:
        client.user_info("tagesschau")
    assert "TIKTOK_RESEARCH_CLIENT_SECRET" in str(info.value)
    for text in (str(info.value), repr(client), caplog.text):
        assert "the-wrong-secret-123" not in text
    with pytest.raises(MissingResearchCredentials, match="TIKTOK_RESEARCH_CLIENT_KEY"):
        ResearchClient(None, "x")


# -- quota ----------------------------------------------------------------------------------------------


def test_quota_exhaustion_stops_and_the_next_day_completes_without_duplicates(rig):
    research = rig.server.research
    research.config.daily_quota = 4
    report, client = rig.collect()
    assert not report.complete and "daily_quota_limit_exceeded" in report.stopped
    assert report.stopped_at is not None
    assert client.meter.by_code["daily_quota_limit_exceeded"] == 1
    stopped = rig.state.window(report.scope, report.stopped_at[0])
    assert stopped.status == "open" and stopped.stop_reason == "daily_quota_limit_exceeded"

    # the same day, another run knows the quota is spent and sends nothing
    sent = sum(research.stats.requests.values())
    again, client2 = rig.collect()
    assert not again.complete and client2.meter.total == 0
    assert sum(research.stats.requests.values()) == sent

    research.next_day()
    research.config.daily_quota = 1000
    done, _ = rig.collect()
    assert done.complete
    rig.load()
    ids = rig.ids()
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(SEED_USERS, *Q1)


def test_the_ledger_never_starts_a_request_beyond_the_quota(rig):
    report, client = rig.collect(ledger=rig.ledger(daily_quota=3))
    assert not report.complete and "daily quota of 3" in report.stopped
    assert client.meter.total == 3 == sum(rig.server.research.stats.requests.values())
    capped, client2 = rig.collect(ledger=rig.ledger(daily_quota=1000, run_cap=2))
    assert "per-run request cap" in capped.stopped and client2.meter.total == 2


def test_internal_errors_are_retried_after_the_pause_and_counted(rig):
    rig.server.research.fail_next(2, "internal_error")
    report, client = rig.collect(["20minuten"])
    assert report.complete and report.retries == 2
    assert client.meter.total == floor(["20minuten"], *Q1) + 2  # each retry costs quota
    assert rig.server.research.stats.codes["internal_error"] == 2
    rig.load()
    assert set(rig.ids()) == expected_ids(["20minuten"], *Q1)


def test_invalid_params_fail_with_the_api_message(rig):
    client = rig.client()
    with pytest.raises(InvalidParams, match="at most 30 days"):
        client.query_videos(build_query(["20minuten"]), date(2024, 1, 1), date(2024, 1, 31))
    with pytest.raises(ValueError):
        client.query_videos(build_query(["20minuten"]), date(2024, 1, 1), date(2024, 1, 30), max_count=101)
    with pytest.raises(InvalidParams, match="max_count"):
        client.post(
            "/v2/research/video/query/",
            {"query": build_query(["x"]), "max_count": 101, "start_date": "20240101", "end_date": "20240102"},
        )


# -- search_id expiry and crashes ------------------------------------------------------------------------


def test_an_expired_search_id_restarts_its_window_without_duplicates(rig):
    rig.server.research.expire_search_after(1)  # the first search asked for its second page has expired
    report, client = rig.collect(["20minuten"])
    assert report.complete and report.restarts == 1
    assert client.meter.by_code["invalid_params"] == 1
    loaded = rig.load()
    assert loaded.pages_superseded == 1  # generation 1's first page, replaced by generation 2
    ids = rig.ids()
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(["20minuten"], *Q1)
    keys = [i.key for i in rig.store.list("research-raw/") if "-g2-" in i.key]
    assert keys, "the restarted window is archived as generation 2"


def test_a_killed_run_resumes(sandbox_research, tmp_path):
    server = sandbox_research
    server.research.config.page_interval = 0.3
    env = {
        **os.environ,
        "TIKTOK_RESEARCH_CLIENT_KEY": DEFAULT_CLIENT_KEY,
        "TIKTOK_RESEARCH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "TIKTOK_RESEARCH_BASE_URL": server.base_url,
        "TIKLIVE_HOME": str(tmp_path),
        "TIKLIVE_CONFIG": str(tmp_path / "absent.yaml"),
    }
    env.pop("TIKLIVE_WAREHOUSE_URL", None)
    env.pop("TIKLIVE_ARCHIVE_BUCKET", None)
    cmd = [
        sys.executable,
        "-m",
        "tiklive_assets.cli.research",
        "--users",
        ",".join(SEED_USERS),
        "--from",
        "2024-01-01",
        "--to",
        "2024-03-31",
        "--pause",
        "0.35",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    pages = 0
    while time.monotonic() < deadline and pages < 3:
        time.sleep(0.05)
        try:
            with sqlite3.connect(tmp_path / "state.sqlite", timeout=5) as con:
                pages = con.execute("SELECT COALESCE(SUM(pages), 0) FROM research_windows").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL and 3 <= pages < floor(SEED_USERS, *Q1)
    spent_before = server.research.stats.requests["/v2/research/video/query/"]

    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for user in SEED_USERS:
        assert f"{user}" in done.stdout and f" {len(corpus_videos(user, *Q1))} videos" in done.stdout
    spent_total = server.research.stats.requests["/v2/research/video/query/"]
    # resumed, not restarted: at most the page in flight when it was killed is fetched twice
    assert spent_total <= floor(SEED_USERS, *Q1) + 1
    assert spent_total - spent_before < floor(SEED_USERS, *Q1)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    ids = [r[0] for r in con.execute("SELECT id FROM research_videos").fetchall()]
    con.close()
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(SEED_USERS, *Q1)


# -- users, warehouse, replay ----------------------------------------------------------------------------


def test_user_info_followers_and_following_are_archived_and_loaded(rig):
    ledger = rig.ledger()
    archive = ResearchArchive(rig.store, ledger.today())
    client = rig.client(ledger, archive)
    report = collect_users(client, ["20minuten", "tagesschau", "nosuchuser"], options=CollectOptions(pause=PAUSE))
    assert report.profiles == 2 and "nosuchuser" in report.unavailable
    assert report.followers["20minuten"] == 310 and report.following["20minuten"] == 45
    loaded = rig.load()
    assert loaded.rows["research_users"] == 2
    assert loaded.rows["research_follows"] == 310 + 45 + 240 + 12


def test_the_warehouse_is_rebuilt_from_the_archive_alone(rig):
    rig.collect(["20minuten", "tagesschau"])
    first = rig.load()
    before = sorted(rig.ids())
    rig.warehouse.unlink()  # replay: the archive is the source of truth
    again = rig.load()
    assert sorted(rig.ids()) == before and again.rows == first.rows
    # a later capture day adds counter history, never a second row per video
    rig.server.research.next_day()
    rig.collect(["20minuten", "tagesschau"], refresh=True)
    rows, report = build_rows(rig.store)
    assert len(rows["research_videos"]) == len(before)
    assert len(rows["research_video_counters"]) == 2 * len(before)
    assert report.pages_superseded > 0  # the refreshed (complete) generation replaces the first one


def test_quota_ledger_and_warehouse_on_postgres(postgres_url, rig):
    db = StateDB.from_url(postgres_url)
    try:
        ledger = QuotaLedger(ResearchState(db), daily_quota=3)
        for _ in range(3):
            ledger.reserve("/v2/research/video/query/")
        with pytest.raises(Exception, match="daily quota of 3"):
            ledger.reserve("/v2/research/video/query/")
        assert ledger.left_today() == 0
    finally:
        db.close()
    rig.collect(["zeitimbild"])
    report = load_research_warehouse(rig.store, postgres_url)
    assert report.target == "postgresql"
    assert videos_per_user(postgres_url, *Q1) == {"zeitimbild": len(corpus_videos("zeitimbild", *Q1))}


# -- Dagster -----------------------------------------------------------------------------------------------


def test_a_backfill_range_runs_one_search_per_window(rig, tmp_path, monkeypatch):
    from tiklive_assets.defs.research.assets import research_tables, research_video_archive
    from tiklive_assets.defs.research.resources import TikTokResearchResource
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource

    assert research_video_archive.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=30)
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    config = tmp_path / "tiklive.yaml"
    config.write_text(f"research:\n  usernames: [20minuten]\n  page_pause_seconds: {PAUSE}\n")
    resources = {
        "tiktok_research": TikTokResearchResource(
            client_key=DEFAULT_CLIENT_KEY, client_secret=DEFAULT_CLIENT_SECRET, base_url=rig.server.base_url
        ),
        "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
        "data_root": DataRootResource(home=str(tmp_path)),
        "tracking": TrackingConfigResource(path=str(config)),
    }
    start, end = date(2024, 1, 1), date(2024, 2, 29)  # 60 create-date partitions: two full windows
    result = dg.materialize(
        [research_video_archive],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    )
    assert result.success
    assert rig.server.research.stats.searches == 2
    assert rig.server.research.stats.requests["/v2/research/video/query/"] == floor(["20minuten"], start, end)
    [mat] = [e.materialization for e in result.get_asset_materialization_events()][:1]
    assert mat.metadata["quota_left_today"].value == 1000 - floor(["20minuten"], start, end)
    tables = dg.materialize([research_tables], resources=resources)
    assert tables.success
    assert videos_per_user(str(tmp_path / "warehouse.duckdb"), start, end) == {
        "20minuten": len(corpus_videos("20minuten", start, end))
    }
