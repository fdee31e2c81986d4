"""The erasure's warehouse side: who the user is (past handles, their posts) and the DELETEs of their rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .matcher import ErasureError

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB

_IN_BATCH = 1000


Condition = tuple[str, list[Any]]  # a WHERE fragment and its parameters
Statement = tuple[str, str, list[Any]]  # table, WHERE, parameters


def _in(column: str, values: list[str]) -> Condition:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _table_exists(warehouse: Any, name: str) -> bool:
    rows = warehouse.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
        [name],
    )
    return bool(rows and rows[0][0])


def _or(conditions: Iterable[Condition | None]) -> Condition | None:
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    return " OR ".join(f"({sql})" for sql, _ in present), [p for _, params in present for p in params]


def warehouse_statements(
    warehouse: Any, user_id: str | None, handles: list[str], aweme_ids: list[str]
) -> list[Statement]:
    """(table, WHERE, params) in execution order; batches of aweme ids never overlap earlier statements."""

    def uid(col: str) -> Condition | None:
        return (f"{col} = ?", [user_id]) if user_id else None

    def hnd(col: str) -> Condition | None:
        return _in(f"lower({col})", handles) if handles else None

    account = _or([uid("id"), hnd("handle")])
    plan: list[tuple[str, list[Condition | None], str | None]] = [
        # table, base conditions, column (or expression) holding aweme ids of the user's posts
        ("post_metrics_history", [], "aweme_id"),
        ("hashtags", [uid("author_id")], "aweme_id"),
        ("dead_letters", [], "aweme_id"),
        ("comments", [uid("user_id"), hnd("user_handle")], "aweme_id"),
        ("posts", [uid("author_id"), hnd("author_handle")], "aweme_id"),
        ("user_snapshots", [uid("user_id"), hnd("handle")], None),
        ("users", [uid("user_id"), hnd("handle")], None),
        ("follow_edges", [uid("user_id"), uid("other_id"), hnd("other_handle")], None),
        ("archive_index", [uid("user_id"), hnd("handle")], "aweme_id"),
        # an account row is the user (id, or the handle that stopped resolving); a video row is one of their posts
        (
            "tombstones",
            [(f"kind = 'account' AND ({account[0]})", account[1]) if account else None],
            "CASE WHEN kind = 'video' THEN id END",
        ),
    ]
    if handles:
        videos_of = f"id IN (SELECT id FROM research_videos WHERE {_in('lower(username)', handles)[0]})"
        research: list[tuple[str, list[Condition | None], str | None]] = [
            ("research_video_counters", [(videos_of, list(handles))], None),
            # comments on the user's videos (the Research API names no commenter, so the video is the link)
            ("research_comments", [(videos_of.replace("id IN", "video_id IN", 1), list(handles))], None),
            ("research_videos", [hnd("username")], None),
            ("research_users", [hnd("username")], None),
            ("research_follows", [hnd("username"), hnd("other_username")], None),
        ]
        plan += [r for r in research if _table_exists(warehouse, r[0])]
    statements: list[Statement] = []
    for table, base_conditions, aweme_col in plan:
        base = _or(base_conditions)
        if aweme_col is None or not aweme_ids:
            if base:
                statements.append((table, *base))
            continue
        for start in range(0, len(aweme_ids), _IN_BATCH):
            in_sql, in_params = _in(aweme_col, aweme_ids[start : start + _IN_BATCH])
            if start == 0:
                merged = _or([base, (in_sql, in_params)]) or (in_sql, in_params)  # never None: one is given
                statements.append((table, *merged))
            elif base:
                statements.append((table, f"NOT COALESCE(({base[0]}), FALSE) AND {in_sql}", base[1] + in_params))
            else:
                statements.append((table, in_sql, in_params))
    return statements


def resolve_user(
    warehouse: Any | None, user_id: str | None, handles: Iterable[str], state: StateDB | None = None
) -> tuple[str | None, set[str], set[str]]:
    """(user id, every handle known for them, aweme ids of their posts) from what was given plus the warehouse
    (past handles of a renamed account) and the state DB's handle -> id cache."""
    handles = {h.strip().lstrip("@").lower() for h in handles if h and h.strip()}
    uid = str(user_id) if user_id not in (None, "") else None
    if warehouse is not None and uid is None and handles:
        found: set[str] = set()
        for h in handles:
            found |= {r[0] for r in warehouse.query("SELECT user_id FROM users WHERE lower(handle) = ?", [h])}
            found |= {
                r[0]
                for r in warehouse.query("SELECT DISTINCT author_id FROM posts WHERE lower(author_handle) = ?", [h])
            }
        if len(found) > 1:
            raise ErasureError(
                f"the handle matches {len(found)} different user ids in the warehouse (a reused "
                "handle): give the user id explicitly"
            )
        uid = next(iter(found), None)
    if uid is None and state is not None:
        ids = {state.cached_user_id(h) for h in handles} - {None}
        if len(ids) == 1:
            uid = ids.pop()
    aweme: set[str] = set()
    if warehouse is not None:
        if uid is not None:
            for sql in (
                "SELECT DISTINCT lower(handle) FROM users WHERE user_id = ? AND handle IS NOT NULL",
                "SELECT DISTINCT lower(handle) FROM user_snapshots WHERE user_id = ? AND handle IS NOT NULL",
                "SELECT DISTINCT lower(author_handle) FROM posts WHERE author_id = ?",
                "SELECT DISTINCT lower(user_handle) FROM comments WHERE user_id = ? AND user_handle IS NOT NULL",
                "SELECT DISTINCT lower(other_handle) FROM follow_edges WHERE other_id = ? AND other_handle IS NOT NULL",
            ):
                handles |= {r[0] for r in warehouse.query(sql, [uid])}
            aweme |= {r[0] for r in warehouse.query("SELECT aweme_id FROM posts WHERE author_id = ?", [uid])}
            aweme |= {
                r[0] for r in warehouse.query("SELECT DISTINCT aweme_id FROM hashtags WHERE author_id = ?", [uid])
            }
        for h in handles:
            aweme |= {r[0] for r in warehouse.query("SELECT aweme_id FROM posts WHERE lower(author_handle) = ?", [h])}
    return uid, handles, aweme
