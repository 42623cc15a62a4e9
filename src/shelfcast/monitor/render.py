"""Alerts as text and pictures: the Markdown table of a run (the Prefect artifact), the on-call report
(a PNG of MAPE over time per store against its threshold, and a Markdown or HTML summary).
"""

from __future__ import annotations

import html
from pathlib import Path

from shelfcast.monitor.findings import response_text
from shelfcast.monitor.alert_log import Alert, AlertLog

COLUMNS = ("id", "severity", "rule", "scope", "observed", "threshold", "since (UTC)", "count", "status", "what", "links")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: float, unit: str) -> str:
    suffix = {"MAPE %": " %", "points": " pt", "hours": " h", "%": " %"}.get(unit, f" {unit}")
    return f"{value:.2f}{suffix}"


def alert_rows(alerts: list[Alert], markdown_links: bool = True) -> list[list[str]]:
    rows = []
    for a in alerts:
        links = []
        for name, url, ident in (("MLflow", a.mlflow_url, a.mlflow_run_id), ("Prefect", a.prefect_url, a.prefect_flow_run_id)):
            if url and markdown_links:
                links.append(f"[{name}]({url})")
            elif url or ident:
                links.append(f"{name} {url or ident}")
        rows.append([
            str(a.id), a.severity, a.rule, a.scope_label, _number(a.observed, a.unit), _number(a.threshold, a.unit),
            a.first_seen.replace("T", " "), str(a.count), a.status,
            f"{a.message}. Response: {response_text(a.rule, a.subject, a.severity, a.scope_label)}",
            " ".join(links) or "-",
        ])
    return rows


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def alerts_markdown(alerts: list[Alert]) -> str:
    if not alerts:
        return "_No alerts._"
    return markdown_table(COLUMNS, alert_rows(alerts))


def run_markdown(title: str, summary, alerts: list[Alert], skipped: list[str], open_alerts: list[Alert]) -> str:
    """The artifact of one monitor run: what changed in this run, then everything still open."""
    parts = [
        f"# {title}",
        f"{len(summary.opened)} new, {len(summary.reopened)} reopened, {len(summary.repeated)} still firing, "
        f"{len(summary.resolved)} resolved; {summary.queued} notification(s) queued.",
        "## This run",
        alerts_markdown(alerts),
        "## Open now",
        alerts_markdown(open_alerts),
    ]
    if skipped:
        parts += ["## Not checked", "\n".join(f"- {_cell(s)}" for s in skipped)]
    return "\n\n".join(parts) + "\n"


FEW_DAYS = 14  # fewer live days than this: every store on one chart (panels of a few dots say nothing)


def accuracy_figure(points):
    """The figure of `accuracy_png` from its points (`date`, `store`, `mape_pct`, `threshold_pct`).

    Readable from the first live day: every day is a marker (one day is a dot, not nothing), each threshold is a
    step line drawn across the whole x range (a one-day line would be invisible), the x axis spans the days
    measured plus half a day each side (never years), and with fewer than `FEW_DAYS` days every store shares one
    chart with its own colour and a legend inside the axes; with more, one panel per store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    points = points.assign(date=pd.to_datetime(points["date"])).sort_values(["store", "date"])
    stores = sorted(points["store"].unique())
    first, last = points["date"].min(), points["date"].max()
    xlim = (first - pd.Timedelta(hours=12), last + pd.Timedelta(hours=12))
    days = points["date"].nunique()
    colours = plt.get_cmap("tab10" if len(stores) <= 10 else "tab20")
    shared = days < FEW_DAYS
    cols = 1 if shared else min(5, len(stores))
    rows = 1 if shared else -(-len(stores) // cols)
    size = (8.0, 4.5) if shared else (3.2 * cols, 2.4 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=not shared, squeeze=False)
    for ax in axes.ravel()[1 if shared else len(stores):]:
        ax.set_visible(False)
    for index, number in enumerate(stores):
        ax = axes.ravel()[0 if shared else index]
        part = points[points["store"] == number]
        colour = colours(index % colours.N) if shared else "tab:blue"
        ax.plot(part["date"], part["mape_pct"], marker="o", ms=4, lw=1.2, color=colour,
                label=f"store {number}" if shared else "MAPE")
        # The threshold as a step over the whole x range, so a single day still shows where it lies.
        steps_x = [xlim[0], *part["date"].iloc[1:], xlim[1]]
        steps_y = [*part["threshold_pct"], part["threshold_pct"].iloc[-1]]
        ax.step(steps_x, steps_y, where="post", lw=1.0, ls="--", color="tab:red" if not shared else colour,
                alpha=0.9, label="threshold" if not shared else f"store {number} threshold")
        over = part[part["mape_pct"] > part["threshold_pct"]]
        ax.scatter(over["date"], over["mape_pct"], s=40, facecolors="none", edgecolors="tab:red", zorder=3,
                   label="over threshold" if len(over) and (not shared or index == 0) else None)
        if not shared:
            ax.set_title(f"store {number}", fontsize=9)
    for ax in axes.ravel():
        if not ax.get_visible():
            continue
        ax.set_xlim(*xlim)
        if days <= 7:  # one tick per day, named by its date
            ax.xaxis.set_major_locator(mdates.DayLocator())
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        else:
            locator = mdates.AutoDateLocator(minticks=2, maxticks=6)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        top = max(points["mape_pct"].max(), points["threshold_pct"].max())
        ax.set_ylim(0, top * 1.15)
    axes[0][0].set_ylabel("MAPE %", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower left", ncol=2 if shared and len(stores) > 3 else 1, framealpha=0.9)
    span = f"{first:%Y-%m-%d}" if days == 1 else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
    fig.suptitle(f"Live champion: daily MAPE per store against its alert threshold ({days} day(s), {span})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_png(alert_log: AlertLog, out_path: Path, since: str | None = None) -> Path | None:
    """Daily MAPE of the live champion per store against its threshold (`accuracy_figure`), as a PNG."""
    import matplotlib.pyplot as plt
    import pandas as pd

    points = pd.DataFrame(alert_log.accuracy("champion", "store", since))
    if points.empty:
        return None
    fig = accuracy_figure(points)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def store_table(alert_log: AlertLog, since: str | None = None) -> tuple[list[str], list[list[str]]]:
    import pandas as pd

    points = pd.DataFrame(alert_log.accuracy("champion", "store", since))
    header = ["store", "days", "latest day", "latest MAPE %", "threshold %", "mean MAPE % (7 d)", "days over"]
    if points.empty:
        return header, []
    rows = []
    for number, part in points.groupby("store"):
        part = part.sort_values("date")
        last = part.iloc[-1]
        rows.append([
            str(number), str(len(part)), last["date"], f"{last['mape_pct']:.2f}", f"{last['threshold_pct']:.2f}",
            f"{part['mape_pct'].tail(7).mean():.2f}", str(int((part["mape_pct"] > part["threshold_pct"]).sum())),
        ])
    return header, rows


def write_report(alert_log: AlertLog, out_dir: Path, fmt: str = "md", since: str | None = None) -> list[Path]:
    """`mape_by_store.png` and `summary.md` (or `.html`) in `out_dir`; returns the paths written."""
    if fmt not in ("md", "html"):
        raise ValueError(f"format {fmt!r}; choose md or html")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = accuracy_png(alert_log, out_dir / "mape_by_store.png", since)
    open_alerts = alert_log.list()
    header, rows = store_table(alert_log, since)
    if fmt == "md":
        text = "\n\n".join([
            "# shelfcast alert report",
            f"## Open alerts ({len(open_alerts)})",
            alerts_markdown(open_alerts),
            "## Live champion accuracy per store",
            markdown_table(header, rows) if rows else "_No accuracy measured yet._",
            f"![MAPE per store]({png.name})" if png else "",
        ]) + "\n"
    else:
        text = _html_report(open_alerts, header, rows, png)
    summary = out_dir / f"summary.{fmt}"
    summary.write_text(text, encoding="utf-8")
    return [p for p in (png, summary) if p is not None]


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_report(open_alerts, header, rows, png) -> str:
    style = "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>shelfcast alert report</title><style>{style}</style>"
        f"</head><body><h1>shelfcast alert report</h1><h2>Open alerts ({len(open_alerts)})</h2>"
        + (_html_table(COLUMNS, alert_rows(open_alerts, markdown_links=False)) if open_alerts else "<p>No alerts.</p>")
        + "<h2>Live champion accuracy per store</h2>"
        + (_html_table(header, rows) if rows else "<p>No accuracy measured yet.</p>")
        + (f"<p><img src='{png.name}' alt='MAPE per store'></p>" if png else "")
        + "</body></html>\n"
    )
