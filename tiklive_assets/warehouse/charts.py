"""Charts of the marts for Dagster metadata: one small PNG per mart, as markdown an asset's metadata can carry.

Each chart function takes rows already read from a mart and returns ``![title](data:image/png;base64,…)``, the
form ``MetadataValue.md`` renders as an image in the Dagster UI. The PNG is stored in the event log once per
partition, so it stays small: 640x320 px, a 128-colour palette, typically 10 to 40 KB. It carries no metadata (no
timestamp, no software version), so the same rows always give the same bytes.

matplotlib is imported inside the functions (loading the definitions never pays for it) and drawn with the Agg
canvas on a bare ``Figure``: no display, no pyplot figure registry to leak figures into, nothing global changed
(style settings apply inside ``rc_context`` only). Labels are drawn as plain text, so a ``$`` in a sound title is
never read as math.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

WIDTH_IN, HEIGHT_IN, DPI = 6.4, 3.2, 100
MAX_LABEL = 28
NO_DATA = "no data"

_STYLE: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "text.parse_math": False,
}


def png_markdown(title: str, png: bytes) -> str:
    """Markdown showing ``png`` inline, ``title`` as its alternative text."""
    alt = title.replace("[", "(").replace("]", ")")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


# Fixed margins (fractions of the figure) instead of a layout engine, which would double the time per chart; tick
# labels are short (``human``) and item labels cut to MAX_LABEL, so these always fit.
ONE_PANEL = {"left": 0.11, "right": 0.97, "top": 0.88, "bottom": 0.15}
WITH_LEGEND = {**ONE_PANEL, "right": 0.68}  # the legend sits to the right of the plot, never over a line
TWO_PANELS = {"left": 0.09, "right": 0.98, "top": 0.80, "bottom": 0.15, "wspace": 0.3}
BARS = {"left": 0.27, "right": 0.97, "top": 0.88, "bottom": 0.14}
PALETTE = 128  # colours kept in the PNG: the lines' anti-aliasing stays smooth at a third of the bytes


def render(title: str, draw: Callable[[Any], None], *, panels: int = 1, margins: dict | None = None) -> bytes:
    """PNG bytes of a 640x320 figure titled ``title``; ``draw(axes)`` gets one Axes, or a list when ``panels`` > 1.

    The figure is drawn by Agg, then stored as a palette PNG without metadata: small, and byte-identical for the
    same drawing.
    """
    import matplotlib
    import PIL.Image
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():
        # a glyph the bundled font lacks (an emoji in a sound title) is drawn as a box, not reported per partition
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        fig.subplots_adjust(**(margins or ONE_PANEL))
        axes = fig.subplots(1, panels, squeeze=True)
        fig.suptitle(title)
        draw(list(axes) if panels > 1 else axes)
        canvas.draw()
        image = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        image = image.convert("RGB").quantize(
            PALETTE, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE
        )
        fig.clear()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def chart(title: str, draw: Callable[[Any], None] | None, *, panels: int = 1, margins: dict | None = None) -> str:
    """The markdown image of one chart; ``draw=None`` (nothing to plot) gives a figure saying so."""
    if draw is None:
        return png_markdown(f"{title}: {NO_DATA}", render(title, _no_data))
    return png_markdown(title, render(title, draw, panels=panels, margins=margins))


def _no_data(ax: Any) -> None:
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        f"{NO_DATA} up to this day",
        ha="center",
        va="center",
        fontsize=12,
        color="0.4",
        transform=ax.transAxes,
    )


def short(label: str, width: int = MAX_LABEL) -> str:
    label = " ".join(str(label).split())
    return label if len(label) <= width else label[: width - 1] + "…"


def human(value: float) -> str:
    """1234 -> '1.2k', 5600000 -> '5.6M': tick labels and annotations that stay short."""
    rounded = float(f"{value:.3g}")  # the suffix follows the rounded value: 999,999 is '1M', never '1e+03k'
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(rounded) >= factor:
            return f"{rounded / factor:.3g}{suffix}"
    return f"{rounded:.3g}" if rounded != int(rounded) else f"{int(rounded):,}"


def _human_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))


def _day_axis(ax: Any, days: Sequence[date]) -> None:
    """Ticks on whole days only (the marts' grain), at most about eight of them, labelled 'Nov 27'."""
    from matplotlib.dates import DateFormatter, DayLocator

    first, last = min(days), max(days)
    span = (last - first).days + 1
    # explicit limits: a single day would otherwise be widened to years of empty axis
    pad = timedelta(hours=14)
    ax.set_xlim(datetime.combine(first, time()) - pad, datetime.combine(last, time()) + pad)
    ax.xaxis.set_major_locator(DayLocator(interval=max(1, -(-span // 8))))
    ax.xaxis.set_major_formatter(DateFormatter("%b %d"))


def _count_axis(ax: Any) -> None:
    """A y axis of whole numbers (followers, credits); a flat series gets a band around it, not 0.01 steps."""
    from matplotlib.ticker import MaxNLocator

    low, high = ax.dataLim.intervaly
    if high - low < 2:
        ax.set_ylim(min(0, low) - 1, high + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _human_axis(ax.yaxis)


def _byte_unit(peak: float) -> tuple[float, str]:
    for factor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if peak >= factor:
            return factor, unit
    return 1, "bytes"


def follower_growth(series: Mapping[str, Sequence[tuple[date, int]]], up_to: date, *, of: int | None = None) -> str:
    """One line per account: followers gained since its first day shown; the legend carries today's count."""
    title = f"Follower growth per account, as of {up_to}"
    if of is not None and of > len(series):
        title = f"Follower growth, top {len(series)} of {of} accounts, as of {up_to}"
    if not series:
        return chart(title, None)

    def draw(ax: Any) -> None:
        for handle, points in series.items():
            days, followers = zip(*points, strict=True)
            base = followers[0]
            label = f"@{short(handle, 18)}  {followers[-1]:,} ({followers[-1] - base:+,})"
            ax.plot(days, [f - base for f in followers], marker="o", markersize=3, linewidth=1.4, label=label)
        ax.axhline(0, color="0.5", linewidth=0.6)
        _count_axis(ax)
        _day_axis(ax, [day for points in series.values() for day, _ in points])
        ax.set_ylabel("followers gained since first day shown")
        ax.set_xlabel("archive day (UTC)")
        _legend_beside(ax, "account, followers (change)")

    return chart(title, draw, margins=WITH_LEGEND)


def _legend_beside(ax: Any, title: str) -> None:
    """The lines' legend to the right of the plot (the margin WITH_LEGEND leaves), under ``title``."""
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=title, title_fontsize=7, alignment="left"
    )


def video_virality(series: Mapping[str, Sequence[tuple[float, float]]], up_to: date) -> str:
    """One line per video: views per hour since posting (y) at each capture, against hours since posting (x)."""
    title = f"Views per hour since posting, top {len(series)} videos, as of {up_to}"
    if not series:
        return chart(f"Views per hour since posting, as of {up_to}", None)

    def draw(ax: Any) -> None:
        peaks = [rate for points in series.values() for _, rate in points if rate > 0]
        for label, points in series.items():
            hours, rates = zip(*points, strict=True)
            ax.plot(hours, rates, marker="o", markersize=3, linewidth=1.4, label=short(label, 30))
        log = bool(peaks) and max(peaks) / min(peaks) > 50
        if log:
            ax.set_yscale("log")
        ax.set_ylabel("views per hour since posting" + (" (log scale)" if log else ""))
        ax.set_xlabel("hours since posting, at capture")
        _human_axis(ax.yaxis)
        _legend_beside(ax, "author, video id")

    return chart(title, draw, margins=WITH_LEGEND)


def archive_summary(days: Sequence[tuple[date, int, int, int]], up_to: date) -> str:
    """Two panels per archive day: credits spent (bars), and bytes stored (video media and raw responses, stacked).

    ``days`` holds (day, credits, video_bytes, raw_bytes).
    """
    title = f"Daily archive summary, as of {up_to}"
    if not days:
        return chart(title, None)

    def draw(axes: list[Any]) -> None:
        credits_ax, bytes_ax = axes
        when = [d for d, *_ in days]
        credits_ax.bar(when, [c for _, c, _, _ in days], width=0.8, color="#4c72b0")
        credits_ax.set_title("credits spent per day")
        credits_ax.set_ylabel("credits (archived responses)")
        _count_axis(credits_ax)
        factor, unit = _byte_unit(max(v + r for _, _, v, r in days))
        media = [v / factor for _, _, v, _ in days]
        bytes_ax.bar(when, media, width=0.8, color="#55a868", label="video and photo media")
        bytes_ax.bar(
            when,
            [r / factor for *_, r in days],
            width=0.8,
            bottom=media,
            color="#c4a35a",
            label="raw API responses (gzip)",
        )
        bytes_ax.set_title("bytes stored per day")
        bytes_ax.set_ylabel(unit)
        bytes_ax.legend(loc="upper left", frameon=False)
        bytes_ax.set_ylim(0, max(v + r for _, _, v, r in days) / factor * 1.35)  # headroom for the legend
        for ax in axes:
            _day_axis(ax, when)
            ax.set_xlabel("archive day (UTC)")
            ax.grid(axis="x", visible=False)

    return chart(title, draw, panels=2, margins=TWO_PANELS)


def ranking(title: str, items: Sequence[tuple[str, int, int | None]], up_to: date) -> str:
    """Horizontal bars, largest on top: posts per item, each bar annotated with the posts' total plays.

    ``items`` holds (label, posts, total_plays), already ordered.
    """
    title = f"{title}, as of {up_to}"
    if not items:
        return chart(title, None)

    def draw(ax: Any) -> None:
        from matplotlib.ticker import MaxNLocator

        labels = [short(label) for label, _, _ in items]
        posts = [p for _, p, _ in items]
        bars = ax.barh(range(len(items)), posts, color="#4c72b0", height=0.7)
        ax.set_yticks(range(len(items)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("posts")
        ax.set_xlim(0, max(posts) * 1.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", visible=False)
        for bar, (_, _, plays) in zip(bars, items, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f"  {human(plays or 0)} plays",
                va="center",
                fontsize=7,
                color="0.3",
            )

    return chart(title, draw, margins=BARS)


def completeness(days: Sequence[tuple[date, int, int, int, int, int]], up_to: date) -> str:
    """Per archive day: new posts expected (outline) against posts resolved and dead (stacked bars), with a red
    mark over each day on which a source fell silent, a walk was cut short or a profile was missing.

    ``days`` holds (day, new_ids, resolved, dead, unresolved, problems).
    """
    title = f"Daily completeness: expected against captured, as of {up_to}"
    if not days:
        return chart(title, None)

    def draw(ax: Any) -> None:
        when = [d for d, *_ in days]
        resolved = [r for _, _, r, _, _, _ in days]
        ax.bar(when, resolved, width=0.8, color="#55a868", label="resolved")
        ax.bar(when, [x for _, _, _, x, _, _ in days], width=0.8, bottom=resolved, color="#8c8c8c", label="dead")
        ax.bar(
            when,
            [n for _, n, *_ in days],
            width=0.8,
            fill=False,
            edgecolor="#4c72b0",
            linewidth=1.2,
            label="new posts listed (expected)",
        )
        peak = max(max(n, r + x) for _, n, r, x, _, _ in days) or 1
        flagged = [d for d, *_, problems in days if problems]
        if flagged:
            ax.scatter(flagged, [peak * 1.12] * len(flagged), marker="v", color="#c44e52", label="a source fell silent")
        ax.set_ylim(0, peak * 1.45)  # headroom for the marks and the legend
        _count_axis(ax)
        _day_axis(ax, when)
        ax.set_ylabel("posts")
        ax.set_xlabel("archive day (UTC)")
        ax.legend(loc="upper left", frameon=False, ncol=2)
        ax.grid(axis="x", visible=False)

    return chart(title, draw)


def engagement_curves(series: Mapping[str, Sequence[tuple[float, float, bool]]], up_to: date) -> str:
    """One line per video: views (y) at each refresh age (x, hours after posting, log scale: the ages spread from
    an hour to a month). A deleted video's line is dashed and ends at its last answered age."""
    title = f"Views by hours since posting, {len(series)} videos, as of {up_to}"
    if not series:
        return chart(f"Views by hours since posting, as of {up_to}", None)

    def draw(ax: Any) -> None:
        for label, points in series.items():
            ages = [age for age, _, _ in points]
            views = [v for _, v, _ in points]
            deleted = any(d for _, _, d in points)
            ax.plot(
                ages,
                views,
                marker="o",
                markersize=3,
                linewidth=1.4,
                linestyle="--" if deleted else "-",
                label=short(label + (" (deleted)" if deleted else ""), 30),
            )
        ax.set_xscale("log")
        ax.set_xlabel("hours since posting (refresh age, log scale)")
        ax.set_ylabel("views")
        _human_axis(ax.xaxis)
        _human_axis(ax.yaxis)
        _legend_beside(ax, "author, video id")

    return chart(title, draw, margins=WITH_LEGEND)


def deleted_by_day(days: Sequence[tuple[date, int, int]], up_to: date) -> str:
    """Content first seen missing per archive day: videos and accounts, stacked bars. ``days``: (day, videos,
    accounts)."""
    title = f"Deleted or private content, first seen missing per day, as of {up_to}"
    if not days:
        return chart(title, None)

    def draw(ax: Any) -> None:
        when = [d for d, _, _ in days]
        videos = [v for _, v, _ in days]
        ax.bar(when, videos, width=0.8, color="#c44e52", label="videos")
        ax.bar(when, [a for _, _, a in days], width=0.8, bottom=videos, color="#8172b2", label="accounts")
        ax.set_ylabel("first seen missing")
        _day_axis(ax, when)
        _count_axis(ax)
        ax.legend(loc="upper left", fontsize=8)

    return chart(title, draw)


def cost_forecast(
    days: Sequence[tuple[date, int]],
    per_day: float,
    projected: int,
    bills: Mapping[str, Mapping[str, float]],
    up_to: date,
) -> str:
    """Two panels: credits per day with the 7-day mean (the month's projection in the title), and each provider's
    projected monthly storage bill stacked by part (hot, warm, cold storage, writes, transitions).

    ``days`` holds (day, credits); ``bills`` maps a provider to its parts in US dollars.
    """
    title = f"What the archive costs, as of {up_to}: {projected:,} credits projected this month"
    if not days and not bills:
        return chart(title, None)

    def draw(axes: list[Any]) -> None:
        credits_ax, bill_ax = axes
        if days:
            when = [d for d, _ in days]
            credits_ax.bar(when, [c for _, c in days], width=0.8, color="#4c72b0")
            credits_ax.axhline(per_day, color="#c44e52", linewidth=1.2, label=f"7-day mean {human(per_day)}/day")
            credits_ax.legend(loc="upper left", frameon=False)
            _day_axis(credits_ax, when)
        credits_ax.set_title("credits per day")
        credits_ax.set_ylabel("credits")
        credits_ax.set_xlabel("day (UTC)")
        _count_axis(credits_ax)
        credits_ax.grid(axis="x", visible=False)
        providers = list(bills)
        parts = ("hot", "warm", "cold", "writes", "transitions")
        colours = ("#c44e52", "#dd8452", "#4c72b0", "#8c8c8c", "#55a868")
        left = [0.0] * len(providers)
        for part, colour in zip(parts, colours, strict=True):
            values = [bills[p].get(part, 0.0) for p in providers]
            bill_ax.barh(range(len(providers)), values, left=left, color=colour, height=0.6, label=part)
            left = [a + b for a, b in zip(left, values, strict=True)]
        bill_ax.set_yticks(range(len(providers)), [p.upper() for p in providers])
        bill_ax.invert_yaxis()
        for row, total in enumerate(left):
            bill_ax.text(total, row, f"  ${total:,.2f}", va="center", fontsize=7, color="0.3")
        bill_ax.set_xlim(0, (max(left, default=0) or 1) * 1.4)
        bill_ax.set_title("projected storage bill this month (USD)")
        bill_ax.legend(loc="lower right", frameon=False, fontsize=6)
        bill_ax.grid(axis="y", visible=False)

    return chart(title, draw, panels=2, margins=TWO_PANELS)
