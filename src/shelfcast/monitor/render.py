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


def accuracy_png(alert_log: AlertLog, out_path: Path, since: str | None = None) -> Path | None:
    """Daily MAPE of the live champion per store against its threshold, one panel per store."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    points = pd.DataFrame(alert_log.accuracy("champion", "store", since))
    if points.empty:
        return None
    points["date"] = pd.to_datetime(points["date"])
    stores = sorted(points["store"].unique())
    cols = min(5, len(stores))
    rows = -(-len(stores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, squeeze=False)
    for ax in axes.ravel()[len(stores):]:
        ax.set_visible(False)
    for ax, number in zip(axes.ravel(), stores):
        part = points[points["store"] == number]
        ax.plot(part["date"], part["mape_pct"], lw=1.2, color="tab:blue", label="MAPE")
        ax.plot(part["date"], part["threshold_pct"], lw=1.0, ls="--", color="tab:red", label="threshold")
        over = part[part["mape_pct"] > part["threshold_pct"]]
        ax.scatter(over["date"], over["mape_pct"], s=10, color="tab:red", zorder=3)
        ax.set_title(f"store {number}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", rotation=45)
    axes[0][0].set_ylabel("MAPE %", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Live champion: daily MAPE per store against its alert threshold", fontsize=10)
    fig.tight_layout()
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
