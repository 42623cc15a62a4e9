"""The compression table's cells, shared by the terminal (`shelfcast bench compression`) and the README."""

from __future__ import annotations

import math


def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


COLUMNS = ("config", "variant", "params", "non-zero", "article B", "model file B", "gzip B", "MAPE % (mean ± std)",
           "article MAPE", "SMAPE %", "WAPE %", "gap to floor", "latency µs", "fit s")


def table_rows(doc: dict) -> list[list[str]]:
    """The cells of the compression table: every variant beside the article's row, the rules, the baseline and
    the peers (their saved model file in `model file B`, `.tflite` for the LSTMs), the floor."""
    from shelfcast.bench.compression import ARTICLE_TABLE

    rows = []
    for row in doc["variants"]:
        if "mape_mean" not in row:
            rows.append([row["config"], row["name"], f"failed: {row['failed'][0]['reason']}", *[""] * 11])
            continue
        article = ARTICLE_TABLE.get(row["name"]) if row["config"] == "article" else None
        rows.append([
            row["config"], row["name"], f"{row['params']:,}", f"{row['nonzero_params']:,}", f"{row['article_bytes']:,}",
            f"{row['tflite_bytes']:,}", f"{row['gzip_bytes']:,}", f"{_fmt(row['mape_mean'])} ± {_fmt(row['mape_std'])}",
            _fmt(article["mape_pct"]) if article else "", _fmt(row["smape_mean"]), _fmt(row["wape_mean"]),
            _fmt(row["gap_to_floor_pct_points"], "+.2f"), _fmt(row["latency_us_median"], ".0f"),
            _fmt(row.get("train_seconds"), ".0f"),
        ])
    for row in doc["baselines"]:
        rows.append([row.get("kind", "baseline"), row["name"], f"{row['params']:,}", "", "",
                     f"{row.get('model_bytes', 0):,}", "", _fmt(row["mape_pct"]), "", _fmt(row["smape_pct"]),
                     _fmt(row["wape_pct"]), _fmt(row["gap_to_floor_pct_points"], "+.2f"), "",
                     _fmt(row.get("fit_seconds"), ".1f") if row.get("fit_seconds") is not None else ""])
    floor = doc["noise_floor"]["mape_pct_true_mean"]
    rows.append(["floor", "true mean known (oracle)", "", "", "", "", "", _fmt(floor), "", "", "", "+0.00", "", ""])
    return rows


def markdown_table(doc: dict) -> str:
    """The same table as Markdown, for the README."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "--:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(doc)]
    return "\n".join(lines)
