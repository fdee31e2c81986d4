"""The Research API as recorded responses show it, one test per shape, against the realistic research sandbox.

Every shape here is synthetic (the sandbox's own corpus), reproducing what real answers look like: decreasing
Unix-time follower cursors, short video pages whose cursor still jumps by ``max_count``, transient failures
(``invalid_params`` "Invalid count or cursor", an HTML 504 page, ``internal_error``, "Something went wrong"),
NUL characters, missing fields, 19-digit ids, a private user, the token endpoint's flat error.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import USER_FOLLOWERS, VIDEO_QUERY, ResearchClient, ResearchResponse, build_query
from tiklive_assets.research.collect import CollectOptions, collect_comments, collect_users, collect_videos
from tiklive_assets.research.errors import AuthFailed, CursorStuck, InternalError
from tiklive_assets.research.pagination import ResearchPages
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.warehouse import build_rows, load_research_warehouse, videos_per_user
from tiklive_assets.research.windows import split_range
from tiklive_assets.sandbox.research import (
    DEFAULT_CLIENT_KEY,
    DEFAULT_CLIENT_SECRET,
    PRIVATE_USERNAME,
    ResearchSandboxConfig,
    corpus_videos,
    find_video,
    video_comments,
)
from tiklive_assets.sandbox.server import SandboxConfig, SandboxServer
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore

INTERVAL = 0.05  # the sandbox's gap between pages of one search (10 s on the real API)
PAUSE = 0.06
BACKOFF = 0.01  # the first retry's backoff (2 s against the real API)
JAN = (date(2024, 1, 1), date(2024, 1, 30))  # one window; 20minuten has more than 100 videos in it


class Rig:
    def __init__(self, server: SandboxServer, tmp: Path) -> None:
        self.server = server
        self.research = server.research
        self.db = StateDB.from_url(f"sqlite:///{tmp / 'state.sqlite'}")
        self.state = ResearchState(self.db)
        self.store = LocalStore(tmp / "archive")
        self.warehouse = tmp / "warehouse.duckdb"
        self.ledger = QuotaLedger(self.state, today=self.research.today)
        self.archive = ResearchArchive(self.store, self.ledger.today())

    def client(self, secret: str = DEFAULT_CLIENT_SECRET, max_attempts: int = 4) -> ResearchClient:
        return ResearchClient(
            DEFAULT_CLIENT_KEY,
            secret,
            self.server.base_url,
            quota=self.ledger,
            on_response=self.archive.write,
            backoff_initial=BACKOFF,
            max_attempts=max_attempts,
        )

    def collect(self, users=("20minuten",), start=JAN[0], end=JAN[1], client=None):
        client = client or self.client()
        report = collect_videos(
            client,
            self.archive,
            self.state,
            build_query(list(users)),
            split_range(start, end),
            CollectOptions(pause=PAUSE),
        )
        return report, client

    def query(self, sql: str) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


def _rig(tmp_path, realism: bool, faults=None):
    research = ResearchSandboxConfig(page_interval=INTERVAL, realism=realism, faults=faults)
    server = SandboxServer(SandboxConfig(research=research))
    server.start()
    rig = Rig(server, tmp_path)
    return rig


@pytest.fixture
def realistic(tmp_path):
    """The research sandbox with realism on (its scripted transient failures included)."""
    rig = _rig(tmp_path, realism=True)
    yield rig
    rig.db.close()
    rig.server.stop()


@pytest.fixture
def quiet(tmp_path):
    """The realistic shapes without the scripted failures, so one failure can be injected at a time."""
    rig = _rig(tmp_path, realism=True, faults={})
    yield rig
    rig.db.close()
    rig.server.stop()


def visible_ids(users, start, end) -> set[str]:
    return {str(v.id) for u in users for v in corpus_videos(u, start, end, realism=True)}


def cursor_positions(users, start, end, max_count=100) -> int:
    """Requests one search needs: the cursor counts withheld videos, so pages follow the full result list."""
    total = 0
    for w in split_range(start, end):
        n = sum(len(corpus_videos(u, w.start, w.end)) for u in users)
        total += max(1, -(-n // max_count))
    return total


# -- followers and following: a decreasing Unix-time cursor ------------------------------------------------


def test_follower_cursors_decrease_and_every_follower_is_collected(quiet):
    client = quiet.client()
    sent = []
    pages = ResearchPages.followers(
        lambda cursor, _sid, pacer=None: (
            sent.append(cursor) or client.user_followers("20minuten", cursor, 100, pacer=pacer)
        ),
        pause=0,
    )
    people = list(pages.items())
    assert sent[0] is None  # the first request sends no cursor: the API starts from now
    assert all(b < a for a, b in zip(sent[1:], sent[2:], strict=False)) and len(sent) == 4  # 310 followers, 100 a page
    assert len({p["username"] for p in people}) == 310


def test_a_follower_cursor_that_does_not_decrease_is_drift():
    def fetch(cursor, _sid, pacer=None):
        body = {
            "data": {"user_followers": [{"username": "a"}], "cursor": (cursor or 1_700_000_000) + 5, "has_more": True},
            "error": {"code": "ok"},
        }
        return ResearchResponse(USER_FOLLOWERS, {}, 200, json.dumps(body).encode(), None)

    with pytest.raises(CursorStuck, match="did not decrease"):
        list(ResearchPages.followers(fetch, pause=0).pages())


# -- video query: short pages, cursor jumps by max_count ---------------------------------------------------


def test_short_pages_with_jumping_cursors_never_end_a_walk(quiet):
    report, client = quiet.collect()
    assert report.complete
    bodies = [json.loads(gzip.decompress(quiet.store.get_bytes(k))) for k in quiet.archive.keys]
    short = [b for b in bodies if b["data"]["has_more"] and len(b["data"]["videos"]) < 100]
    assert short and short[0]["data"]["cursor"] == 100  # fewer than 100 came back, the cursor still jumped
    assert set(report.video_ids) == visible_ids(["20minuten"], *JAN)
    assert client.meter.total == cursor_positions(["20minuten"], *JAN)


def test_an_empty_page_with_has_more_does_not_end_the_walk():
    answers = iter([([], 100, True), ([{"id": 7}], 150, False)])

    def fetch(cursor, sid, pacer=None):
        videos, nxt, more = next(answers)
        body = {
            "data": {"videos": videos, "cursor": nxt, "has_more": more, "search_id": "7354367454467855403"},
            "error": {"code": "ok"},
        }
        return ResearchResponse(VIDEO_QUERY, {}, 200, json.dumps(body).encode(), None)

    pages = list(ResearchPages(fetch, pause=0, start_cursor=0).pages())
    assert [p.cursor for p in pages] == [0, 100] and pages[1].search_id == "7354367454467855403"


# -- transient failures: retried with backoff, bounded, counted, charged to the quota ------------------------


@pytest.mark.parametrize(
    "kind,code",
    [
        ("invalid_count_or_cursor", "invalid_params"),
        ("gateway_504", "gateway_error"),
        ("internal_error", "internal_error"),
        ("something_went_wrong", "unknown_error"),
    ],
)
def test_transient_failures_are_retried_and_counted(quiet, kind, code):
    quiet.research.config.faults = {(VIDEO_QUERY, 2): kind}  # the second page of the search
    report, client = quiet.collect()
    assert report.complete and report.retries == 1
    assert client.meter.retries == Counter({code: 1})
    assert client.meter.total == cursor_positions(["20minuten"], *JAN) + 1  # the retry is a request
    assert quiet.ledger.spent_today() == client.meter.total == sum(quiet.research.stats.requests.values())
    assert set(report.video_ids) == visible_ids(["20minuten"], *JAN)


def test_retries_are_bounded_and_every_attempt_is_reserved(quiet):
    quiet.research.fail_next(10, "internal_error")
    with pytest.raises(InternalError):
        quiet.collect(client=quiet.client(max_attempts=3))
    assert quiet.ledger.spent_today() == 3 == sum(quiet.research.stats.requests.values())


def test_the_realistic_script_is_survived_end_to_end(realistic):
    report, client = realistic.collect(["20minuten", "tagesschau"], date(2024, 1, 1), date(2024, 2, 29))
    assert report.complete and report.retries == 4  # every scripted video-query failure, once each
    assert set(report.video_ids) == visible_ids(["20minuten", "tagesschau"], date(2024, 1, 1), date(2024, 2, 29))


# -- ids as text, NUL characters, missing fields ---------------------------------------------------------


def _archived_text(store) -> str:
    return "".join(gzip.decompress(store.get_bytes(i.key)).decode() for i in store.list("research-raw/"))


def test_ids_are_text_with_every_digit(quiet):
    quiet.collect()
    load_research_warehouse(quiet.store, quiet.warehouse)
    raw = _archived_text(quiet.store)
    wire_ids = set(re.findall(r'"id":(\d+)', raw))
    wire_playlists = set(re.findall(r'"playlist_id":(\d+)', raw))
    rows = quiet.query("SELECT id, playlist_id, typeof(id) FROM research_videos")
    assert {r[0] for r in rows} == wire_ids and all(r[2] == "VARCHAR" for r in rows)
    assert {r[1] for r in rows if r[1] is not None} == wire_playlists
    assert all(int(p) > 2**53 and float(int(p)) != int(p) for p in wire_playlists)  # a float would lose them


def test_nul_characters_are_stripped_and_counted(quiet):
    quiet.collect(["20minuten", "tagesschau"])
    rows, report = build_rows(quiet.store)
    assert report.nul_stripped > 0
    assert not any("\x00" in str(v) for table in rows.values() for row in table for v in row)
    load_research_warehouse(quiet.store, quiet.warehouse)
    assert videos_per_user(quiet.warehouse, *JAN) == {
        u: len(corpus_videos(u, *JAN, realism=True)) for u in ("20minuten", "tagesschau")
    }


def test_nul_characters_never_reach_postgres(quiet, postgres_url):
    quiet.collect(["20minuten"])
    report = load_research_warehouse(quiet.store, postgres_url)  # Postgres rejects NUL in TEXT
    assert report.target == "postgresql" and report.nul_stripped > 0


def test_missing_fields_become_null(quiet):
    quiet.collect()
    load_research_warehouse(quiet.store, quiet.warehouse)
    rows = dict(
        (r[0], r[1:])
        for r in quiet.query("SELECT id, region_code, view_count, hashtag_names, voice_to_text FROM research_videos")
    )
    gaps = [vid for vid in rows if int(vid) % 7 == 1]
    assert gaps and all(rows[v][0] is None and rows[v][1] is None and rows[v][2] is None for v in gaps)


# -- users: a private user is a warning, not the end of the run --------------------------------------------


def test_a_private_users_lists_are_a_warning_and_the_others_are_complete(quiet):
    client = quiet.client()
    report = collect_users(client, [PRIVATE_USERNAME, "20minuten", "tagesschau"], options=CollectOptions(pause=0))
    assert set(report.warnings) == {f"{PRIVATE_USERNAME} followers", f"{PRIVATE_USERNAME} following"}
    assert report.profiles == 3 and report.followers == Counter({"20minuten": 310, "tagesschau": 240})
    assert report.following == Counter({"20minuten": 45, "tagesschau": 12})
    loaded = load_research_warehouse(quiet.store, quiet.warehouse)
    assert loaded.rows["research_follows"] == 310 + 45 + 240 + 12


# -- the token endpoint's flat error ---------------------------------------------------------------------


def test_the_flat_token_error_is_reported_with_its_description_and_log_id(quiet, caplog):
    client = quiet.client(secret="the-wrong-secret-456")
    with pytest.raises(AuthFailed) as info:
        client.user_info("20minuten")
    text = str(info.value)
    assert "invalid_client" in text and "client_key or client_secret is wrong" in text
    assert info.value.log_id and info.value.log_id in text
    for shown in (text, repr(client), caplog.text, _archived_text(quiet.store)):
        assert "the-wrong-secret-456" not in shown


# -- comments ----------------------------------------------------------------------------------------------


def test_comments_are_archived_first_and_loaded_with_text_ids(quiet):
    report, client = quiet.collect(["tagesschau"], date(2024, 1, 1), date(2024, 1, 10))
    comments = collect_comments(client, report.video_ids, options=CollectOptions(pause=0))
    expected = {str(c["id"]): c for vid in report.video_ids for c in video_comments(find_video(int(vid)), realism=True)}
    assert comments.total == len(expected) and not comments.warnings
    assert any(len(video_comments(find_video(int(v)))) > 100 for v in report.video_ids)  # some need two pages
    loaded = load_research_warehouse(quiet.store, quiet.warehouse)
    assert loaded.rows["research_comments"] == len(expected)
    rows = {
        r[0]: r[1:]
        for r in quiet.query("SELECT id, video_id, parent_comment_id, reply_count, text FROM research_comments")
    }
    assert set(rows) == set(expected)
    some = next(iter(expected.values()))
    assert rows[str(some["id"])][0] == str(some["video_id"])
    assert any(r[2] is None for r in rows.values())  # reply_count absent on the wire -> NULL
    assert not any("\x00" in (r[3] or "") for r in rows.values())


# -- what a failed run collected is kept ----------------------------------------------------------------


def _cli_env(monkeypatch, rig, tmp_path):
    monkeypatch.setenv("TIKTOK_RESEARCH_CLIENT_KEY", DEFAULT_CLIENT_KEY)
    monkeypatch.setenv("TIKTOK_RESEARCH_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("TIKTOK_RESEARCH_BASE_URL", rig.server.base_url)
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIKLIVE_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)


def test_a_fatal_error_keeps_and_loads_what_was_collected(quiet, tmp_path, monkeypatch, capsys):
    from tiklive_assets.cli.research import main

    _cli_env(monkeypatch, quiet, tmp_path)
    # the second window's first page fails on every attempt: the first window is archived and must be loaded
    quiet.research.config.faults = {(VIDEO_QUERY, n): "internal_error" for n in range(3, 9)}
    code = main(
        ["--users", "20minuten", "--from", "2024-01-01", "--to", "2024-02-29", "--pause", str(PAUSE), "--no-progress"]
    )
    out = capsys.readouterr()
    assert code == 1 and "research failed" in out.err and "archived and loaded" in out.err
    con = duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True)
    ids = {r[0] for r in con.execute("SELECT id FROM research_videos").fetchall()}
    con.close()
    assert ids == visible_ids(["20minuten"], *JAN)


def test_the_dagster_asset_loads_what_was_archived_when_collection_fails(quiet, tmp_path, monkeypatch):
    from tiklive_assets.defs.research.assets import research_video_archive
    from tiklive_assets.defs.research.resources import TikTokResearchResource
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource

    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    config = tmp_path / "tiklive.yaml"
    config.write_text(f"research:\n  usernames: [20minuten]\n  page_pause_seconds: {PAUSE}\n")
    quiet.research.config.faults = {(VIDEO_QUERY, n): "internal_error" for n in range(3, 9)}
    resources = {
        "tiktok_research": TikTokResearchResource(
            client_key=DEFAULT_CLIENT_KEY,
            client_secret=DEFAULT_CLIENT_SECRET,
            base_url=quiet.server.base_url,
            backoff_initial=BACKOFF,
        ),
        "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
        "data_root": DataRootResource(home=str(tmp_path)),
        "tracking": TrackingConfigResource(path=str(config)),
    }
    result = dg.materialize(
        [research_video_archive],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-02-29"},
    )
    assert not result.success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    ids = {r[0] for r in con.execute("SELECT id FROM research_videos").fetchall()}
    con.close()
    assert ids == visible_ids(["20minuten"], *JAN)


# -- the done criterion: the CLI against the realistic sandbox -------------------------------------------


def test_cli_with_users_and_comments_survives_the_realistic_sandbox(tmp_path, capsys, monkeypatch):
    from tiklive_assets.cli.research import main

    monkeypatch.setenv("TIKLIVE_CONFIG", str(tmp_path / "absent.yaml"))  # no page cap from a tiklive.yaml
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    users = ["tagesschau", "20minuten", PRIVATE_USERNAME]
    start, end = date(2024, 1, 1), date(2024, 1, 20)
    code = main(
        [
            "--sandbox",
            "--realism",
            "--users",
            ",".join(users),
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--with-users",
            "--with-comments",
            "--pause",
            str(PAUSE),
            "--no-progress",
            "--home",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for user in users:
        assert re.search(rf"{re.escape(user)}\s+{len(corpus_videos(user, start, end, realism=True))} videos", out)
    assert "users: 3 profiles, 550 followers, 57 following" in out
    assert re.search(r"requests spent: \d+ this run .* [1-9]\d* retries \(", out)
    assert f"warning: {PRIVATE_USERNAME} followers" in out
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    comments = con.execute("SELECT COUNT(*) FROM research_comments").fetchone()[0]
    con.close()
    videos = [v for u in users for v in corpus_videos(u, start, end, realism=True)]
    assert comments == sum(len(video_comments(v)) for v in videos)
