"""``tiklive status``: what the pipeline holds right now, for a person woken at 3 a.m.

Read-only: the queue by state, who holds claims (alive or not), the walks of today not complete, dead letters by
reason, today's credits, what is left behind and why, and (when a Dagster instance is configured) the last run of each
capture asset. It never calls the API and never changes the state database.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from tiklive_assets import settings
from tiklive_assets.cli.common import EXIT_OK, EXIT_USAGE, add_home, fail, use_location

DESCRIPTION = (
    "Show what the pipeline holds now, without calling the API or changing anything: the queue by state; the claims "
    "by owner (run id, host, pid) and whether each owner is alive (a dead owner's claims are taken by the next run at "
    "once); the ids left pending or claimed and why; the discovery, follow and comment walks of today that are not "
    "complete (their cursors); dead letters by reason; the credits spent today (UTC) by endpoint; and the last run "
    "of each capture asset, from DAGSTER_HOME's Dagster instance or else TIKLIVE_HOME/dagster's. Exit status 0 "
    "whatever it shows; 2 when the state database cannot be read."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status",
        help="show the queue, claims, walks in progress, dead letters and today's credits",
        description=DESCRIPTION,
    )
    add_home(status)
    status.add_argument(
        "--ids", type=int, default=20, metavar="N", help="list up to N of the ids left pending or claimed (default 20)"
    )


def _walks_in_progress(state, day) -> list[tuple[str, str | None, int | None]]:
    """Cursors of today's walks with no complete marker (scopes end with the ingest day)."""
    suffix = f":{day.isoformat()}"
    out = []
    for record in state.list_cursors():
        if not record.scope.endswith(suffix):
            continue
        endpoint, _, rest = record.scope.partition(":")
        entity = rest[: -len(suffix)]
        done = (
            state.get_value(f"complete:{record.scope}")
            or state.get_value(f"walked:{record.scope}")
            or state.get_value(f"complete:{endpoint}:{entity}{suffix}")
        )
        if not done:
            out.append((record.scope, record.value, record.pages))
    return out


def _last_runs(out) -> None:
    """The last materialization of each capture asset, from the Dagster instance DAGSTER_HOME names, else from the
    one ``tiklive run`` and ``tiklive ui`` use under TIKLIVE_HOME/dagster (best effort, read only)."""
    try:
        import dagster as dg

        if settings.dagster_home():
            instance = dg.DagsterInstance.get()
        else:
            folder = settings.DataRoot.from_env().home / "dagster"
            if not folder.is_dir():
                print(f"last runs: none recorded yet ({folder} does not exist; `tiklive run` creates it)", file=out)
                return
            instance = dg.DagsterInstance.local_temp(tempdir=str(folder), overrides={"telemetry": {"enabled": False}})
        print("last materialization of each capture asset:", file=out)
        for name in ("account_profiles", "discovery_queue", "archived_videos", "follow_graph", "post_comments"):
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            if event is None:
                print(f"  {name:<18} never", file=out)
                continue
            when = datetime.fromtimestamp(event.timestamp, UTC)
            print(f"  {name:<18} {when:%Y-%m-%d %H:%M:%S} UTC  run {event.run_id[:8]}", file=out)
    except Exception as exc:  # noqa: BLE001 - optional: the rest of the status matters more
        print(f"last runs: the Dagster instance could not be read ({type(exc).__name__}: {exc})", file=out)


def run(args: argparse.Namespace, out=None) -> int:
    from tiklive_assets.state import StateDB

    out = out or sys.stdout

    root = use_location(args)
    today = datetime.now(UTC).date()
    try:
        state = StateDB.from_url(root.state_url)
        depth = state.queue_depth()
    except Exception as exc:  # noqa: BLE001
        return fail(
            f"cannot read the state database ({type(exc).__name__}: {exc}); check TIKLIVE_STATE_URL or TIKLIVE_HOME",
            EXIT_USAGE,
        )
    try:
        print(f"state database: {root.state_url.split('@')[-1]}", file=out)
        print("queue: " + ", ".join(f"{s} {n}" for s, n in depth.items()), file=out)

        owners = state.owner_statuses()
        print(f"claims by owner ({len(owners)}):" if owners else "claims by owner: none", file=out)
        for owner in owners:
            flag = "ALIVE" if owner.alive else "STALE"
            print(
                f"  {flag} run {owner.run_id or '?'} on {owner.host} pid {owner.pid}: {owner.claims} claim(s), "
                f"{owner.why}" + ("" if owner.alive else " (the next run takes its claims)"),
                file=out,
            )

        total, items = state.left_behind(limit=max(args.ids, 0))
        print(f"left pending or claimed: {total}", file=out)
        for item in items:
            if item.owner_alive:
                why = "held by a live run"
            elif item.last_error:
                why = f"failed {item.attempts} time(s): {item.last_error[:120]}"
            elif item.owner_id:
                why = "claimed by a run that stopped (free for the next run)"
            else:
                why = "waiting for the next run"
            print(f"  {item.aweme_id} ({item.state}, {item.attempts} attempt(s)): {why}", file=out)
        if total > len(items):
            print(f"  ... and {total - len(items)} more (--ids N lists more)", file=out)

        walks = _walks_in_progress(state, today)
        print(f"walks of {today} in progress: {len(walks)}", file=out)
        for scope, value, pages in walks:
            print(f"  {scope}  cursor {value or '-'}  pages {pages or 0}", file=out)

        dead = state.dead_letters_by_reason()
        print(
            "dead letters: " + (", ".join(f"{r}: {n}" for r, n in sorted(dead.items())) if dead else "none"), file=out
        )
        credits = state.credits_spent(today)
        print(
            f"credits today ({today} UTC): {sum(credits.values())}"
            + (" (" + ", ".join(f"{e} {n}" for e, n in credits.items()) + ")" if credits else ""),
            file=out,
        )
    finally:
        state.close()
    _last_runs(out)
    return EXIT_OK
