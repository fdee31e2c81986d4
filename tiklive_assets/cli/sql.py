"""``tiklive sql``: the analyst's SQL shell over ``TIKLIVE_HOME/marts.duckdb``, opened read-only.

The ``duckdb`` Python package the project installs has no command-line shell, so this is a small one on top of it:
statements end with ``;`` and may span lines, ``.tables`` lists the views, ``.mode table|csv`` switches the
output, ``.quit`` (or Ctrl-D) leaves, and history is kept in ``~/.tiklive_sql_history``. ``-c "SELECT ..."`` runs
one query and exits (0, or 1 with the error), for scripts. The file is opened read-only, so nothing an analyst
types can change the marts (they are rebuilt from the warehouse by every run anyway).

``--remote s3://bucket/prefix`` opens the same marts over the exports published beside an archive on S3 (DuckDB's
httpfs reads them in place, nothing is copied): :mod:`tiklive_assets.warehouse.remote`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

from tiklive_assets.cli.common import EPILOG, EXIT_ERROR, add_command, add_home, fail, use_location

HISTORY_FILE = ".tiklive_sql_history"  # in the user's home directory
HISTORY_LENGTH = 1000
TABLE_MAX_ROWS = 1000  # rows a `.mode table` result prints; .mode csv prints them all
TABLE_MAX_WIDTH = 60  # characters of one cell in `.mode table`

HELP = """\
Statements end with ';' and may span several lines. Commands:
  .tables          list the views (tables and marts) you can query
  .schema NAME     the columns of one view
  .mode table|csv  print results as an aligned table (default) or as CSV
  .help            this text
  .quit            leave (Ctrl-D too)
"""


SUMMARY = "query the marts (marts.duckdb, read-only) in an interactive SQL shell, or run one query with -c"
DESCRIPTION = (
    "Open TIKLIVE_HOME/marts.duckdb read-only in a DuckDB SQL shell: the tables and marts every run builds, as "
    "views over the Parquet exports. Statements end with ';' and may span lines; .tables lists the views, "
    ".schema NAME shows one's columns, .mode table|csv switches the output, .quit leaves; history is kept in "
    "~/.tiklive_sql_history. With -c, run one query, print its result and exit: 0, or 1 with the error. Read from "
    "a pipe (tiklive sql < queries.sql), the shell exits 1 if any statement failed."
)
EXAMPLES = (
    "tiklive sql",
    'tiklive sql -c "SELECT handle, followers FROM follower_growth ORDER BY day DESC LIMIT 5"',
    'tiklive sql --csv -c "SELECT * FROM top_hashtags" > hashtags.csv',
    'tiklive sql --remote "s3://team-archive/tiklive?endpoint_url=https://ACCOUNT.r2.cloudflarestorage.com"',
)
REMOTE_HELP = (
    "query the exports published beside an archive on S3 instead of the local marts: s3://bucket/prefix "
    "(?endpoint_url=...&region=... optional; default TIKLIVE_S3_ENDPOINT_URL and TIKLIVE_S3_REGION); without a "
    "URL, the archive's TIKLIVE_ARCHIVE_BUCKET and TIKLIVE_ARCHIVE_PREFIX. Credentials: the usual AWS chain "
    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role), never printed or stored"
)


def add_parser(sub: argparse._SubParsersAction, epilog: str = EPILOG) -> None:
    sql = add_command(sub, "sql", SUMMARY, DESCRIPTION, EXAMPLES, epilog)
    sql.add_argument(
        "-c",
        "--command",
        dest="sql",
        default=None,
        metavar="SQL",
        help="run this SQL (one or more statements), print the last result and exit",
    )
    sql.add_argument("--csv", action="store_true", help="print results as CSV (with a header line)")
    sql.add_argument("--remote", nargs="?", const="", default=None, metavar="S3_URL", help=REMOTE_HELP)
    add_home(sql)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from tiklive_assets.warehouse.marts import default_marts_path

    if args.remote is not None:
        return run_remote(args)
    path = default_marts_path(use_location(args).home)
    if not path.is_file():
        return fail(
            f"no marts at {path} yet: every `tiklive run` builds them (try `tiklive run --sandbox` first), or "
            "point TIKLIVE_HOME (or --home) at the data root that holds them",
            EXIT_ERROR,
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        hint = (
            " A run is rebuilding the marts right now; try again when it finishes."
            if "lock" in str(exc).lower()
            else ""
        )
        return fail(f"cannot open {path} read-only: {exc}.{hint}", EXIT_ERROR)
    shell = Shell(con, mode="csv" if args.csv else "table")
    try:
        if args.sql is not None:
            return 0 if shell.execute(args.sql) else 1
        return shell.repl(path)
    finally:
        con.close()


def run_remote(args: argparse.Namespace) -> int:
    """The shell over the marts on S3: views built for this session over the published exports, read-only."""
    import duckdb

    from tiklive_assets.storage import InvalidStoreUrl, StoreError
    from tiklive_assets.warehouse import WarehouseError
    from tiklive_assets.warehouse.remote import RemoteExports, remote_marts

    use_location(args)
    where = "the archive bucket"
    try:
        remote = RemoteExports.from_url(args.remote) if args.remote else RemoteExports.from_settings()
        where = f"{remote.url}/exports/"
        with remote_marts(remote) as con:
            shell = Shell(con, mode="csv" if args.csv else "table")
            if args.sql is not None:
                return 0 if shell.execute(args.sql) else 1
            return shell.repl(where)
    except (InvalidStoreUrl, StoreError, WarehouseError) as exc:
        return fail(str(exc), EXIT_ERROR)
    except duckdb.Error as exc:  # the views could not read the bucket (refused, unreachable, not Parquet)
        return fail(f"cannot read the exports under {where}: {exc}", EXIT_ERROR)


class Shell:
    """Executes statements and dot-commands against one connection and prints what they return."""

    def __init__(self, con, *, mode: str = "table", out=None, err=None):
        self.con = con
        self.mode = mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.failed = False

    # -- statements ------------------------------------------------------------------------------------------

    def execute(self, sql: str) -> bool:
        """Run ``sql`` and print its result; an error is printed as one line (no traceback) and returns False."""
        import duckdb

        try:
            cursor = self.con.execute(sql)
            if cursor.description is None:  # a statement without a result (SET, PRAGMA ...)
                return True
            columns = [d[0] for d in cursor.description]
            if self.mode == "csv":
                writer = csv.writer(self.out, lineterminator="\n")
                writer.writerow(columns)
                while batch := cursor.fetchmany(10_000):
                    writer.writerows(["" if v is None else v for v in row] for row in batch)
            else:
                rows = cursor.fetchmany(TABLE_MAX_ROWS + 1)
                self._table(columns, rows[:TABLE_MAX_ROWS])
                if len(rows) > TABLE_MAX_ROWS:
                    print(
                        f"(only the first {TABLE_MAX_ROWS} rows are shown: add a LIMIT, or `.mode csv` to print "
                        "every row)",
                        file=self.out,
                    )
            self.out.flush()
            return True
        except duckdb.Error as exc:
            self._error(str(exc))
            return False
        except KeyboardInterrupt:
            self.con.interrupt()
            self._error("interrupted")
            return False

    def _table(self, columns: list[str], rows: list[tuple]) -> None:
        def cell(value) -> str:
            text = "NULL" if value is None else str(value).replace("\n", "\\n")
            return text if len(text) <= TABLE_MAX_WIDTH else text[: TABLE_MAX_WIDTH - 1] + "…"

        cells = [[cell(v) for v in row] for row in rows]
        numeric = [
            bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
            for i in range(len(columns))
        ]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

        def line(values: list[str]) -> str:
            return " | ".join(
                v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
            ).rstrip()

        print(line(columns), file=self.out)
        print("-+-".join("-" * w for w in widths), file=self.out)
        for row in cells:
            print(line(row), file=self.out)
        print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})", file=self.out)

    def _error(self, message: str) -> None:
        self.failed = True
        print(f"Error: {message}", file=self.err, flush=True)

    # -- dot-commands ----------------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run one dot-command; False means leave the shell."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name in (".quit", ".exit", ".q"):
            return False
        if name == ".help":
            print(HELP, end="", file=self.out)
        elif name == ".tables":
            names = [
                r[0]
                for r in self.con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
                ).fetchall()
            ]
            self._columns(names)
        elif name == ".schema":
            if not rest:
                self._error(".schema needs a view name, e.g. .schema follower_growth (.tables lists them)")
            else:
                mode, self.mode = self.mode, "table"
                try:
                    self.execute(
                        f'SELECT column_name, column_type, "null" FROM (DESCRIBE "{rest.replace(chr(34), "")}")'
                    )
                finally:
                    self.mode = mode
        elif name == ".mode":
            if rest in ("table", "csv"):
                self.mode = rest
            else:
                self._error(
                    f"unknown mode {rest!r}: use .mode table or .mode csv"
                    if rest
                    else f"the mode is {self.mode}; .mode table or .mode csv changes it"
                )
        else:
            self._error(f"unknown command {name}: .help lists the commands")
        self.out.flush()
        return True

    def _columns(self, names: list[str], width: int = 100) -> None:
        if not names:
            print("(no views: the marts file is empty)", file=self.out)
            return
        size = max(len(n) for n in names) + 2
        per_line = max(1, width // size)
        for start in range(0, len(names), per_line):
            print("".join(n.ljust(size) for n in names[start : start + per_line]).rstrip(), file=self.out)

    # -- the loop --------------------------------------------------------------------------------------------

    def repl(self, path: Path | str, stdin=None) -> int:
        """Read statements and commands until .quit or end of input. Interactive (a terminal): prompts, line
        editing and history; from a pipe: no prompts, and exit 1 if any statement failed."""
        stdin = stdin or sys.stdin
        interactive = stdin.isatty()
        history = _open_history() if interactive else None
        if interactive:
            print(
                f"marts (read-only): {path}\nEnter SQL ending with ';'. .tables lists the views, .help the "
                "commands, .quit leaves.",
                file=self.out,
            )
        buffer: list[str] = []
        try:
            while True:
                prompt = ("   ...> " if buffer else "tiklive> ") if interactive else ""
                try:
                    line = input(prompt) if interactive else stdin.readline()
                except EOFError:  # Ctrl-D
                    print(file=self.out)
                    break
                except KeyboardInterrupt:  # Ctrl-C drops the statement being typed, as in other shells
                    print("^C", file=self.out)
                    buffer.clear()
                    continue
                if not interactive:
                    if line == "":  # end of the piped input
                        break
                    line = line.rstrip("\n")
                if not buffer and line.strip().startswith("."):
                    if not self.command(line):
                        break
                    continue
                if not buffer and not line.strip():
                    continue
                buffer.append(line)
                if line.rstrip().endswith(";"):
                    self.execute("\n".join(buffer))
                    buffer.clear()
            if buffer and "".join(buffer).strip():  # a last statement without its ';' still runs
                self.execute("\n".join(buffer))
        finally:
            if history is not None:
                history()
        return 1 if (self.failed and not interactive) else 0


def _open_history():
    """Load ~/.tiklive_sql_history into readline; returns the function that saves it (None without readline)."""
    try:
        import readline
    except ImportError:  # pragma: no cover - readline ships with CPython on Linux and macOS
        return None
    path = Path.home() / HISTORY_FILE
    with contextlib.suppress(FileNotFoundError, OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        try:
            readline.write_history_file(path)
        except OSError as exc:
            print(f"(history not saved to {path}: {exc.strerror})", file=sys.stderr)

    return save
