"""``tiklive cursors``: list the discovery cursors (with their drift signals), reset one, or forget a cached user id.

The state database's ``cursors`` table is the one authoritative place for discovery cursors (scope
``<endpoint>:<entity>:<ingest day>``). ``list`` exits 1 when any cursor drifts or is stuck, so a cron job can alert.
"""

from __future__ import annotations

import argparse

from tiklive_assets.cli.common import EXIT_ERROR, EXIT_OK, add_command, add_home, fail, use_location

SUMMARY = "list discovery cursors (with drift signals) or reset one to a known-good value"
DESCRIPTION = (
    "The state database's `cursors` table is the one authoritative place for discovery cursors (scope "
    "<endpoint>:<entity>:<ingest day>). `list` shows each with its pages, completeness and drift; `reset` sets one "
    "to a value (or to the value N writes back in its history) and reopens its walk (the pipeline-drift runbook: "
    "stop the worker, reset to the last known-good cursor, let it walk forward)."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    cursors = add_command(sub, "cursors", SUMMARY, DESCRIPTION)
    actions = cursors.add_subparsers(dest="cursors_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list cursors (default: all)")
    listing.add_argument("--prefix", default="", help="only scopes starting with this, e.g. user-posts:107955")
    listing.add_argument("--history", metavar="SCOPE", default=None, help="show the recorded values of one scope")
    reset = actions.add_parser("reset", help="reset one cursor and reopen its walk")
    reset.add_argument("scope", help="the cursor's scope, as `tiklive cursors list` prints it")
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--value", help='the cursor value to resume from ("0" restarts from the newest page)')
    target.add_argument("--back", type=int, help="go back N values in the scope's history (1 = the previous one)")
    forget = actions.add_parser(
        "forget-user",
        help="clear a handle's cached user id: the next run asks /userid/ again (1 credit)",
        description="The user id of each tracked handle is resolved once with /userid/ and cached in the state "
        "database. If the handle was renamed or given to someone else, clear it here; the next run resolves it again.",
    )
    forget.add_argument("handle", help="the TikTok handle, with or without its @")
    add_home(listing, reset, forget)


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.state import StateDB

    with StateDB.from_url(use_location(args).state_url) as state:
        if args.cursors_command == "forget-user":
            return _forget_user(state, args.handle)
        if args.cursors_command == "reset":
            return _reset(state, args)
        return _list(state, args)


def _forget_user(state, handle: str) -> int:
    old = state.forget_user_id(handle)
    handle = handle.lstrip("@")
    print(
        f"@{handle}: cached user id {old} cleared; the next run asks /userid/ again"
        if old
        else f"@{handle} has no cached user id; nothing to clear"
    )
    return EXIT_OK


def _reset(state, args: argparse.Namespace) -> int:
    from tiklive_assets.capture.cursors import reset_cursor

    try:
        value = reset_cursor(state, args.scope, args.value, back=args.back)
    except (KeyError, ValueError) as exc:
        return fail(str(exc).strip("'\""))
    print(f"{args.scope} reset to {value!r}; its walk reopens at the next run")
    return EXIT_OK


def _list(state, args: argparse.Namespace) -> int:
    from tiklive_assets.capture.cursors import cursor_statuses

    if args.history:
        for record in state.cursor_history(args.history, limit=50):
            print(f"{record.updated_at}  {record.value}  (pages {record.pages})")
        return EXIT_OK
    statuses = cursor_statuses(state, args.prefix)
    if not statuses:
        print("no cursors yet (they appear after the first discovery run)")
    for status in statuses:
        flags = ("complete" if status.complete else "open") + (", STUCK" if status.stuck else "")
        flags += f", DRIFT: {status.drift}" if status.drift else ""
        print(f"{status.scope:<48} {status.value or '-':<16} pages {status.pages or 0:<4} {flags}")
    return EXIT_ERROR if any(s.drift or s.stuck for s in statuses) else EXIT_OK
