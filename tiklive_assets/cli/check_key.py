"""``tiklive check-key``: verify an API key with one /userid/ lookup (and the profile it names).

Exit status 0: the key is accepted; 1: it was rejected (HTTP 401/403) or is not set; 2: the check could not tell
(network, server error, unexpected answer). The key itself is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys

from tiklive_assets import settings
from tiklive_assets.cli.common import EXIT_ERROR, EXIT_OK, add_command, add_config, fail

SUMMARY = "verify an API key with one /userid/ lookup (1-2 credits)"
DESCRIPTION = (
    "Verify TIKLIVE_API_KEY before a first run or after rotating it: look up one handle with /userid/ (the first "
    "account of the tracking YAML unless --username names one), then its profile with /userinfo-by-id/. The API "
    "only answers a lookup, found or not, to a key it accepts, so a 404 for the handle also proves the key works. "
    "Exit status 0: the key is accepted; 1: it was rejected (HTTP 401/403) or is not set; 2: the check could not "
    "tell (network, server error, unexpected answer). The key itself is never printed."
)

EXIT_INCONCLUSIVE = 2  # neither accepted nor rejected: the network, the host or its answer is at fault
DEFAULT_CHECK_HANDLE = "cristiano"  # looked up when no account is tracked: a public handle that exists


def add_parser(sub: argparse._SubParsersAction) -> None:
    check = add_command(sub, "check-key", SUMMARY, DESCRIPTION)
    check.add_argument(
        "--username",
        default=None,
        help=f"handle to look up (default: the first account of the tracking YAML, else {DEFAULT_CHECK_HANDLE})",
    )
    add_config(check)
    check.add_argument("--base-url", default=None, help="API host (default: $TIKLIVE_BASE_URL or the real API)")


def _check_handle(args: argparse.Namespace) -> tuple[str, str]:
    """The handle to look up, and where it came from (" (...)" for the output; empty when given)."""
    if args.username:
        return args.username.lstrip("@"), ""
    from tiklive_assets.tracking import ConfigError, load_config

    path = args.config or settings.config_path()
    if not path.is_file():
        return DEFAULT_CHECK_HANDLE, f" (default; no tracking YAML at {path})"
    try:
        accounts = load_config(path).accounts
    except ConfigError as exc:
        print(
            f"(the tracking YAML could not be read, so the check uses @{DEFAULT_CHECK_HANDLE}: {exc})", file=sys.stderr
        )
        return DEFAULT_CHECK_HANDLE, " (default; tracking YAML unreadable)"
    if not accounts:
        return DEFAULT_CHECK_HANDLE, f" (default; {path} tracks no account)"
    return accounts[0].handle, f" (first tracked account in {path})"


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.tikliveapi.client import TikLiveClient
    from tiklive_assets.tikliveapi.errors import AuthError, NotFound, TikLiveError
    from tiklive_assets.tolerant import as_id

    base_url = args.base_url or settings.base_url()
    handle, source = _check_handle(args)
    try:
        answers: list = []  # 200 and 404 responses as received, to tell the API's 404 from another host's page
        client = TikLiveClient(settings.api_key(), base_url, max_attempts=2, on_response=answers.append)
        user_id = as_id((client.userid(handle).json() or {}).get("id"))
        if user_id is None:
            return fail(
                f"check inconclusive against {base_url}: /userid/ answered HTTP 200 without a numeric id for "
                f"@{handle}; retry with --username <a handle you know exists>",
                EXIT_INCONCLUSIVE,
            )
        info = client.userinfo_by_id(user_id).json()
    except AuthError as exc:  # 401/403 (or no key at all): the message names TIKLIVE_API_KEY, never its value
        return fail(f"key rejected: {exc}", EXIT_ERROR)
    except NotFound as exc:
        # Only an accepted key gets as far as a lookup: an unknown handle is answered 404, a bad key 401/403.
        # The API answers in JSON; a 404 page that is not JSON comes from another host (a wrong TIKLIVE_BASE_URL).
        if not answers or not _is_json(answers[-1].body):
            return fail(
                f"check inconclusive against {base_url}: {exc.endpoint} answered HTTP 404 with a body that is not "
                "JSON, so the host is probably not TikLiveAPI. Check TIKLIVE_BASE_URL (or --base-url), then run "
                "`tiklive check-key` again",
                EXIT_INCONCLUSIVE,
            )
        print(
            f"key works against {base_url}: it was accepted, and @{handle}{source} is not found there "
            f"({exc.reason}; HTTP 404). Check the handle's spelling before a run "
            f"({client.credits.total} credit(s) spent)"
        )
        return EXIT_OK
    except (TikLiveError, KeyError, TypeError, AttributeError) as exc:
        return fail(
            f"check inconclusive against {base_url}: {exc}. The key was neither accepted nor rejected: check "
            "TIKLIVE_BASE_URL and the network, then run `tiklive check-key` again",
            EXIT_INCONCLUSIVE,
        )
    if not isinstance(info, dict) or "user" not in info or "stats" not in info:
        keys = sorted(info) if isinstance(info, dict) else type(info).__name__
        return fail(
            f"check inconclusive: the key was accepted, but /userinfo-by-id/ did not return `user` and `stats` "
            f"(got {keys}); check TIKLIVE_BASE_URL points at TikLiveAPI",
            EXIT_INCONCLUSIVE,
        )
    followers = (info.get("stats") or {}).get("followerCount")
    print(
        f"key works against {base_url}: @{handle}{source} is user {user_id} with {followers} followers "
        f"({client.credits.total} credits spent)"
    )
    return EXIT_OK
