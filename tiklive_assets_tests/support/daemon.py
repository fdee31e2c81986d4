"""``dagster-daemon`` with the backfill daemon's clock scaled down (``python -m tiklive_assets_tests.support.daemon``).

Dagster's backfill daemon looks at the backfills every 30 s, a constant rather than an instance setting, so a test
that launches one waits up to 30 s for its run to be submitted and up to 30 s again for the backfill to be marked
done. Here the daemon looks every 2 s; it is otherwise ``dagster-daemon`` itself: the same command line, the same
instance, the same daemons (as ``support.browser.instance_yaml`` polls the run queue every second, not every five).
"""

from __future__ import annotations

BACKFILL_INTERVAL_SECONDS = 2


def main() -> None:
    from dagster._daemon import controller
    from dagster._daemon.cli import main as dagster_daemon

    if not isinstance(getattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS", None), int):
        raise RuntimeError(
            "dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS is gone: this Dagster release sets the "
            "backfill daemon's interval elsewhere; scale that one down here"
        )
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_INTERVAL_SECONDS  # read by the backfill loop, each turn
    dagster_daemon()


if __name__ == "__main__":
    main()
