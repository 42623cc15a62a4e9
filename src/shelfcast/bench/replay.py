"""The replay's results file (`bench/results/replay.json`): runs merged in, the plot, and the README table.

A run without injections is a policy entry (`policies`, one per policy name, the newest run kept); a run with
injections is kept under `injected_runs` and its judged injections under `injections`. Each policy entry carries
the same-days comparison with `frozen` when a frozen run covers those days.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

POLICY_ORDER = ("frozen", "monthly", "weekly", "nightly")
COLOURS = {"frozen": "#7f7f7f", "monthly": "#1f77b4", "weekly": "#d62728", "nightly": "#2ca02c"}


def pooled(daily: list[dict], days: set[str] | None = None) -> float | None:
    """Served MAPE pooled over forecasts (each day weighted by its scored forecasts), on `days` when given."""
    rows = [d for d in daily if d.get("mape_pct") is not None and (days is None or d["day"] in days)]
    weights = np.array([d.get("n", 1) for d in rows], dtype=float)
    if not rows or weights.sum() == 0:
        return None
    return float(np.average([d["mape_pct"] for d in rows], weights=weights))


def merge_result(path: Path, run: dict) -> Path:
    """Merge one replay's result into the results file and redraw its plot; returns the plot's path."""
    path = Path(path)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update({k: run[k] for k in ("data", "stores", "items")})
    doc.setdefault("policies", [])
    doc.setdefault("injected_runs", [])
    doc.setdefault("injections", [])
    entry = dict(run["policy"], noise_floor_pct=run["noise_floor_pct"],
                 noise_floor_mape_optimal_pct=run["noise_floor_mape_optimal_pct"])
    if entry["injections"]:
        doc["injected_runs"] = [r for r in doc["injected_runs"] if r["injections"] != entry["injections"]] + [entry]
        names = {i["name"] for i in run["injections"]}
        doc["injections"] = [i for i in doc["injections"] if i["name"] not in names] + run["injections"]
    else:
        doc["policies"] = [p for p in doc["policies"] if p["name"] != entry["name"]] + [entry]
        doc["policies"].sort(key=lambda p: POLICY_ORDER.index(p["name"]))
    widest = max(doc["policies"] or doc["injected_runs"], key=lambda p: p["days"])
    doc["start"], doc["end"] = widest["first_day"], widest["last_day"]
    doc["noise_floor_pct"] = widest["noise_floor_pct"]
    doc["noise_floor_mape_optimal_pct"] = widest["noise_floor_mape_optimal_pct"]
    compare_with_frozen(doc)
    doc["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return plot(doc, path.with_suffix(".png"))


def compare_with_frozen(doc: dict) -> None:
    """Each run against `frozen` on the days both served (a run and frozen may cover different spans)."""
    frozen = next((p for p in doc["policies"] if p["name"] == "frozen"), None)
    for entry in doc["policies"] + doc["injected_runs"]:
        days = {d["day"] for d in entry["daily"]} & ({d["day"] for d in frozen["daily"]} if frozen else set())
        entry["compared_days"] = len(days)
        if not days:
            entry["frozen_same_days_mape_pct"] = entry["same_days_mape_pct"] = entry["gain_over_frozen_pts"] = None
            continue
        same, mine = pooled(frozen["daily"], days), pooled(entry["daily"], days)
        entry["frozen_same_days_mape_pct"], entry["same_days_mape_pct"] = same, mine
        entry["gain_over_frozen_pts"] = None if same is None or mine is None else same - mine


def rolling(values: list[float | None], window: int = 14) -> np.ndarray:
    series = np.array([np.nan if v is None else v for v in values], dtype=float)
    out = np.full(len(series), np.nan)
    for i in range(len(series)):
        part = series[max(0, i - window + 1):i + 1]
        if np.isfinite(part).sum() >= min(window, 7):
            out[i] = np.nanmean(part)
    return out


def plot(doc: dict, out: Path) -> Path:
    """Served MAPE (14-day mean) per policy over time, against the noise floor and the seasonal-naive rule, with
    each policy's canary promotions and its critical alerts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    runs = doc["policies"] + doc["injected_runs"]
    longest = max(runs, key=lambda r: r["days"])  # the seasonal-naive rule is drawn over its days
    fig, ax = plt.subplots(figsize=(12, 5.5), constrained_layout=True)
    for entry in runs:
        label = entry["name"] + (" + injections" if entry["injections"] else "")
        days = pd.to_datetime([d["day"] for d in entry["daily"]])
        colour = "#9467bd" if entry["injections"] else COLOURS.get(entry["name"], "#8c564b")
        # frozen dashed and on top: where a policy served the same model, both lines stay visible
        style = "-." if entry["injections"] else "--" if entry["name"] == "frozen" else "-"
        mape = pooled(entry["daily"])
        ax.plot(days, rolling([d["mape_pct"] for d in entry["daily"]]), style, color=colour,
                lw=1.4 if entry["name"] == "frozen" else 2.0, zorder=3 if entry["name"] == "frozen" else 2,
                label=f"{label}: {mape:.2f} % over {entry['days']} days" if mape is not None else label)
        if entry is longest:
            ax.plot(days, rolling([d["seasonal_naive_mape_pct"] for d in entry["daily"]]), ":", color="#444444",
                    lw=1.2, label="seasonal-naive rule (mean of lags 7, 14)")
        moves = pd.to_datetime([p["day"] for p in entry["promotion_log"] if p.get("canary")])
        if len(moves):
            ax.scatter(moves, np.full(len(moves), 0.0), marker="|", s=120, color=colour, transform=ax.get_xaxis_transform(),
                       clip_on=False)
        critical = pd.to_datetime([a["first_seen"][:10] for a in entry["alerts"] if a["severity"] == "critical"])
        if len(critical):
            ax.scatter(critical, np.full(len(critical), 0.98), marker="v", s=50, color=colour, zorder=5,
                       transform=ax.get_xaxis_transform())
    if doc.get("noise_floor_pct"):
        ax.axhline(doc["noise_floor_pct"], color="black", lw=1,
                   label=f"noise floor over {doc['start']}..{doc['end']}: {doc['noise_floor_pct']:.2f} %")
    ax.set_ylabel("served MAPE, %, 14-day mean (days with sales)")
    ax.set_title(f"{doc['data']}, stores {doc['stores']} x items {doc['items']}: what stores were served\n"
                 "ticks at the bottom: canary promotions; triangles at the top: critical alerts", fontsize=10)
    ax.xaxis.set_major_locator(mdates.MonthLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=2, framealpha=0.9)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(doc: dict) -> str:
    """Whether retraining paid on this data, in one sentence per retraining policy against `frozen`."""
    sentences = []
    for p in doc["policies"]:
        gain = p.get("gain_over_frozen_pts")
        if p["name"] == "frozen" or gain is None:
            continue
        paid = "paid" if gain > 0.05 else "did not pay" if gain < -0.05 else "made no difference"
        floor = p.get("noise_floor_pct")
        sentences.append(
            f"Retraining {p['name']} {paid}: stores were served {p['same_days_mape_pct']:.2f} % MAPE against "
            f"{p['frozen_same_days_mape_pct']:.2f} % from the frozen first model on the same {p['compared_days']} days "
            f"({gain:+.2f} points); over its {p['days']} days it served {p['served_mape_pct']:.2f} % against a noise "
            f"floor of {floor:.2f} % ({p['served_mape_pct'] - floor:.2f} points above it).")
    return " ".join(sentences) or "No retraining policy has a frozen run on the same days to compare with yet."


def replay_tables(doc: dict) -> str:
    """The README's replay section: the verdict, one row per policy, then one per injection."""
    lines = [
        verdict(doc), "",
        "| policy | days | served MAPE % | noise floor | seasonal naive | on frozen's days: this / frozen / gain | "
        "retrains (failed) | canary promotions | critical alerts | model bytes to stores | on quiet days | wall |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in doc["policies"] + doc["injected_runs"]:
        name = p["name"] + (" + " + str(len(p["injections"])) + " injections" if p["injections"] else "")
        days = str(p["days"]) if p.get("planned_days", p["days"]) == p["days"] else f"{p['days']} of {p['planned_days']}"
        same = (f"{_num(p.get('same_days_mape_pct'))} / {_num(p.get('frozen_same_days_mape_pct'))} / "
                f"{_num(p.get('gain_over_frozen_pts'))} ({p.get('compared_days', 0)} days)"
                if p.get("gain_over_frozen_pts") is not None else "-")
        lines.append(
            f"| {name} | {days} ({p['first_day']}..{p['last_day']}) | {_num(p['served_mape_pct'])} | "
            f"{_num(p.get('noise_floor_pct'))} | {_num(p['seasonal_naive_mape_pct'])} | {same} | {p['retrains']} "
            f"({p['failed_retrains']}) | {p['promotions']} | {p['critical_alerts']} | {p['model_bytes_to_stores']:,} | "
            f"{p['model_bytes_on_quiet_days']:,} | {p['wall_seconds'] / 60:.0f} min |")
    if doc.get("injections"):
        lines += ["", "| injection | rule expected | detected | nights to detect | scope right | days to recover |",
                  "|---|---|---|--:|---|--:|"]
        for i in doc["injections"]:
            rule = " or ".join(i["rule"].split("|")) if i["rule"] else "none: no critical alert on it"
            lines.append(f"| {i['name']} | {rule} | {'yes' if i['detected'] else 'no'} | "
                         f"{i['delay_nights'] if i['delay_nights'] is not None else '-'} | "
                         f"{('yes' if i['scope_correct'] else 'no') if i['rule'] else '-'} | "
                         f"{i['recovered_days'] if i['recovered_days'] is not None else '-'} |")
    return "\n".join(lines)


def render_line(doc: dict) -> str:
    """One sentence for the console at the end of a replay."""
    p = doc["policy"]
    floor = doc.get("noise_floor_pct")
    return (f"{p['name']}: {p['days']} days, served MAPE {_num(p['served_mape_pct'])} % (noise floor {_num(floor)} %, "
            f"seasonal naive {_num(p['seasonal_naive_mape_pct'])} %), {p['retrains']} retrains, {p['promotions']} canary "
            f"promotions, {p['critical_alerts']} critical alerts, {p['model_bytes_to_stores']:,} model bytes to stores "
            f"({p['model_bytes_on_quiet_days']:,} on days without a promotion), {p['wall_seconds'] / 60:.1f} min")
