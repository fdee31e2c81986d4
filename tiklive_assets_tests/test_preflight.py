"""Preflight: set-up errors are found before the first credit, each naming the setting to fix.

Real servers only: moto's S3 server (a missing bucket; wrong credentials with moto's authentication switched on),
a closed TCP port for an unreachable Postgres, the real local Postgres for concurrent migrations, and the sandbox
to prove that `tiklive run` sent it zero requests.
"""

from __future__ import annotations

import io
import multiprocessing
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import yaml

from tiklive_assets.preflight import PreflightError, preflight, prepare_instance_dir, require_ready
from tiklive_assets.storage import LocalStore, MirroredStore, S3Store, StoreMisconfigured
from tiklive_assets_tests.support.capture import base_config, frozen_sandbox


def _client(endpoint: str, key: str = "testing", secret: str = "testing"):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


def test_all_ready_is_no_problem_and_leaves_nothing_behind(tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> None:
    store = S3Store(_client(moto_endpoint), s3_bucket)
    assert preflight(store, _sqlite(tmp_path), api_key_present=True) == []
    assert list(store.list("")) == []  # the probe object was deleted
    local = LocalStore(tmp_path / "archive")
    assert require_ready(local, _sqlite(tmp_path)) == []
    assert list(local.list("")) == []


def test_a_missing_bucket_names_the_bucket_setting(tmp_path: Path, moto_endpoint: str) -> None:
    store = S3Store(_client(moto_endpoint), f"missing-{uuid.uuid4().hex[:8]}")
    problems = preflight(store, _sqlite(tmp_path))
    assert [p.part for p in problems] == ["archive store"]
    assert "TIKLIVE_ARCHIVE_BUCKET" in str(problems[0]) and "does not exist" in problems[0].message
    with pytest.raises(PreflightError) as info:
        require_ready(store, _sqlite(tmp_path))
    assert "no credit spent" in str(info.value)


def test_wrong_credentials_name_the_credentials_and_never_show_the_secret(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import settings as moto_settings

    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys from now on
    store = S3Store(_client(moto_endpoint, "AKIAWRONGWRONGWRONG0", "the-wrong-secret"), s3_bucket)
    problems = preflight(store, _sqlite(tmp_path))
    assert len(problems) == 1 and problems[0].fatal
    text = str(problems[0])
    assert "credentials were refused" in text and "AWS_ACCESS_KEY_ID" in text and "TIKLIVE_ARCHIVE_BUCKET" in text
    assert "the-wrong-secret" not in text
    with pytest.raises(StoreMisconfigured):
        store.put_bytes("a/b.json", b"{}", content_type="application/json")


def test_an_unreachable_state_database_names_the_state_url(tmp_path: Path) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{_closed_port()}/tiklive"
    started = datetime.now(UTC)
    problems = preflight(LocalStore(tmp_path / "archive"), url)
    assert (datetime.now(UTC) - started).total_seconds() < 10
    assert [p.part for p in problems] == ["state database"]
    assert "TIKLIVE_STATE_URL" in str(problems[0]) and "127.0.0.1" in str(problems[0])
    assert "hunter2" not in str(problems[0])
    bad = preflight(LocalStore(tmp_path / "archive"), "mysql://nope")
    assert bad and bad[0].setting == "TIKLIVE_STATE_URL"


def test_a_missing_key_and_a_failing_secondary(tmp_path: Path) -> None:
    blocker = tmp_path / "secondary"
    blocker.write_text("a file where the secondary's directory should be")
    store = MirroredStore(LocalStore(tmp_path / "primary"), LocalStore(blocker))
    problems = preflight(store, _sqlite(tmp_path), api_key_present=False)
    assert [(p.part, p.fatal) for p in problems] == [("API key", True), ("mirror secondary", False)]
    assert problems[0].setting == "TIKLIVE_API_KEY"
    assert list(store.primary.list("")) == []  # the probe never journals itself as unreplicated


def _migrate(url: str, barrier, results) -> None:
    from tiklive_assets.preflight import check_state

    barrier.wait()
    results.put([str(p) for p in check_state(url)])


def _prepare(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        prepare_instance_dir(Path(path))
        import dagster as dg

        instance = dg.DagsterInstance.local_temp(tempdir=path)
        instance.get_runs(limit=1)
        instance.dispose()
        results.put([])
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put([f"{type(exc).__name__}: {exc}"])


def _at_once(target, arg: str, n: int = 3) -> list[list[str]]:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(arg, barrier, results)) for _ in range(n)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    return outcomes


def test_concurrent_first_runs_migrate_a_fresh_state_safely(tmp_path: Path, postgres_url: str) -> None:
    assert _at_once(_migrate, _sqlite(tmp_path)) == [[], [], []]
    assert _at_once(_migrate, postgres_url) == [[], [], []]


def test_concurrent_first_runs_create_the_dagster_instance_safely(tmp_path: Path) -> None:
    """Without the lock, Dagster's alembic stamping races: 'UNIQUE constraint failed: alembic_version' or two heads."""
    for attempt in range(2):
        assert _at_once(_prepare, str(tmp_path / f"dagster-{attempt}")) == [[], [], []]


@pytest.mark.parametrize("fault", ["missing bucket", "wrong credentials", "unreachable state"])
def test_tiklive_run_fails_fast_with_zero_requests_at_the_api(
    fault: str,
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moto import settings as moto_settings

    from tiklive_assets.cli.run import run_day

    setting = {
        "missing bucket": "TIKLIVE_ARCHIVE_BUCKET",
        "wrong credentials": "AWS_ACCESS_KEY_ID",
        "unreachable state": "TIKLIVE_STATE_URL",
    }[fault]
    config = tmp_path / "tiklive.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    with frozen_sandbox() as sb:
        for name, value in {
            "TIKLIVE_HOME": str(tmp_path / "home"),
            "TIKLIVE_CONFIG": str(config),
            "TIKLIVE_BASE_URL": sb.base_url,
            "TIKLIVE_API_KEY": "sandbox-key",
            "TIKLIVE_RATELIMIT_URL": "memory://",
            "TIKLIVE_ARCHIVE_BUCKET": s3_bucket,
            "TIKLIVE_S3_ENDPOINT_URL": moto_endpoint,
            "TIKLIVE_S3_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
        monkeypatch.delenv("TIKLIVE_ARCHIVE_SECONDARY_BUCKET", raising=False)
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        if fault == "missing bucket":
            monkeypatch.setenv("TIKLIVE_ARCHIVE_BUCKET", "no-such-bucket-here")
        elif fault == "wrong credentials":
            monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-wrong-secret")
        else:
            monkeypatch.setenv("TIKLIVE_STATE_URL", f"postgresql://postgres@127.0.0.1:{_closed_port()}/tiklive")
        started = datetime.now(UTC)
        assert run_day(datetime.now(UTC).date(), out=io.StringIO()) == 2
        took = (datetime.now(UTC) - started).total_seconds()
        assert sb.stats()["api_requests"] == 0
    err = capsys.readouterr().err
    assert "preflight failed" in err and setting in err, err
    assert "the-wrong-secret" not in err
    assert took < 15, took
