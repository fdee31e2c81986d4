"""The cheaper capture paths keep their rules: one transaction records an id's files and marks it downloaded, a
response's JSON is parsed once yet never shared between callers, and the client reads the environment once."""

from __future__ import annotations

from datetime import date

import pytest

from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxServer
from tiklive_assets.state import StateDB
from tiklive_assets.tikliveapi.client import TikLiveClient

DAY = date(2026, 11, 24)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/state.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    state = StateDB.from_url(url)
    try:
        yield state
    finally:
        state.close()


def test_files_and_the_downloaded_mark_go_in_one_transaction(db):
    db.enqueue([("7001", "test", "dana"), ("7002", "test", "dana")])
    files = [
        ("video", "videos/2026-11-24/dana/7001.mp4", "a" * 64, 10),
        ("cover", "covers/2026-11-24/7001.jpg", "b" * 64, 2),
        ("sidecar", "videos/2026-11-24/dana/7001.json", "c" * 64, 3),
    ]
    assert db.record_files_downloaded("7001", files, DAY) is True
    assert db.state_of("7001") == "downloaded"
    assert {(f.kind, f.storage_key, f.sha256, f.size, f.ingest_date) for f in db.files_for("7001")} == {
        (kind, key, sha, size, DAY) for kind, key, sha, size in files
    }
    # a bad kind refuses the whole transaction: no file recorded, the id stays where it was
    with pytest.raises(ValueError, match="kind"):
        db.record_files_downloaded("7002", [("video", "v/7002.mp4", "d" * 64, 1), ("thumbnail", "t", None, 1)], DAY)
    assert db.files_for("7002") == [] and db.state_of("7002") == "pending"
    # a dead id is never marked downloaded (as mark_downloaded)
    db.mark_dead("7002", "video not found", 404)
    assert db.record_files_downloaded("7002", [("sidecar", "v/7002.json", "e" * 64, 1)], DAY) is False
    assert db.state_of("7002") == "dead"


def test_a_response_is_parsed_once_and_each_caller_gets_its_own_object():
    with SandboxServer() as sandbox:
        client = TikLiveClient(DEFAULT_API_KEY, sandbox.base_url)
        try:
            response = client.userid("cristiano")
        finally:
            client.close()
    first = response.json()
    first["id"] = "changed by the first caller"
    second = response.json()
    assert second["id"] != "changed by the first caller"
    assert second == response.json()


def test_the_client_reads_its_proxy_from_the_environment_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.example.com login me password pw\n")
    monkeypatch.setenv("NETRC", str(netrc))
    client = TikLiveClient("the-key", "https://api.example.com")
    try:
        assert client.session.trust_env is False  # nothing is looked up per request
        assert client.session.proxies.get("https") == "http://127.0.0.1:9"
        assert client.session.auth == ("me", "pw")
    finally:
        client.close()
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    client = TikLiveClient("the-key", "https://api.example.com")
    try:
        assert "https" not in client.session.proxies  # the origin is exempt: no proxy, as requests would decide
    finally:
        client.close()
