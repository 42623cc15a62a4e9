"""Write the README's result tables from the committed benchmark JSON files, so no number is typed by hand.

A table lives between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; NAME is a JSON file in
`bench/results/` without its suffix. `shelfcast bench readme` rewrites every such block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def write_result(path: Path, doc: dict) -> None:
    """Write a benchmark's JSON result (the input of its README table) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:60]
    return str(value)


def records_table(records: list[dict]) -> str:
    columns = [k for k in records[0] if not isinstance(records[0][k], (list, dict))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in records]
    return "\n".join(lines)


def scalars_table(doc: dict) -> str:
    lines = ["| measure | value |", "|---|--:|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in doc.items() if not isinstance(v, (list, dict))]
    return "\n".join(lines)


def render(name: str, doc) -> str:
    if name == "generalisation-targets":
        return generalisation_targets(doc)
    if name == "replay":
        from shelfcast.bench.replay import replay_tables

        return replay_tables(doc)
    if name == "faults":
        return faults_table(doc)
    if name == "ingest_scale":
        return ingest_scale_tables(doc)
    if name == "mutation":
        return mutation_table(doc)
    if name.endswith("-targets"):
        return compression_targets(doc)
    if name == "generalisation":
        return records_table(doc["runs"])
    if name.startswith("compression") or name.startswith("ablation"):
        from shelfcast.bench.tables import markdown_table

        return markdown_table(doc)
    if isinstance(doc, list):
        return records_table(doc)
    parts = [scalars_table(doc)]
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            parts.append(f"\n{key}:\n\n" + records_table(value))
    return "\n".join(parts)


def update_readme(readme: Path, results: Path) -> list[str]:
    """Rewrite every table block of `readme`; returns the names written."""
    text = readme.read_text()
    written = []

    def replace(match: re.Match) -> str:
        name = match.group("name")
        path = results / f"{name.removesuffix('-targets')}.json"
        if not path.exists():
            raise FileNotFoundError(f"{readme} has a table '{name}' but {path} does not exist; run its benchmark")
        written.append(name)
        return match.group(1) + render(name, json.loads(path.read_text())) + "\n" + match.group(4)

    readme.write_text(BLOCK.sub(replace, text))
    return written


def _row(doc: dict, config: str, name: str) -> dict | None:
    return next((r for r in doc["variants"] if r["config"] == config and r["name"] == name and "mape_mean" in r), None)


def compression_targets(doc: dict, budget_bytes: int = 6000) -> str:
    """The issues' targets, each with the measured value and whether it is met, from the benchmark JSON."""
    from shelfcast.bench.compression import ARTICLE_TABLE

    rule = next(r["mape_pct"] for r in doc["baselines"] if r["name"].startswith("mean of same weekday"))
    lines = ["| target | measured | met |", "|---|---|:-:|"]

    def add(target: str, measured: str, met: bool) -> None:
        lines.append(f"| {target} | {measured} | {'yes' if met else 'no'} |")

    for name, article in ARTICLE_TABLE.items():
        row = _row(doc, "article", name)
        if row:
            add(f"article config {name}: MAPE <= article's {article['mape_pct']:.2f} and < two-week rule {rule:.2f}",
                f"{row['mape_mean']:.2f} ± {row['mape_std']:.2f}", row["mape_mean"] <= article["mape_pct"] and row["mape_mean"] < rule)
    for config in ("article", "edge"):
        int8, parent = _row(doc, config, "LSTM-16+INT8"), _row(doc, config, "LSTM-16")
        if int8 and parent:
            drop = int8["mape_mean"] - parent["mape_mean"]
            add(f"{config} config INT8 LSTM-16: <= {budget_bytes:,} .tflite bytes", f"{int8['tflite_bytes']:,} B",
                int8["tflite_bytes"] <= budget_bytes)
            add(f"{config} config INT8 LSTM-16: within 0.3 MAPE points of its float parent", f"{drop:+.2f} points",
                abs(drop) <= 0.3)
    peers = {r["key"]: r for r in doc["baselines"] if r.get("kind") == "peer"}
    edge = _row(doc, "edge", "LSTM-16+INT8")
    if edge and peers:
        best_peer = min(peers.values(), key=lambda r: r["mape_pct"])
        add(f"edge config INT8 LSTM-16 (<= {budget_bytes:,} B): MAPE <= 12.80 and below every peer "
            f"(best: {best_peer['name'].split(' (')[0]} {best_peer['mape_pct']:.2f})",
            f"{edge['mape_mean']:.2f} ± {edge['mape_std']:.2f} at {edge['tflite_bytes']:,} B",
            edge["mape_mean"] <= 12.80 and edge["mape_mean"] < best_peer["mape_pct"] and edge["tflite_bytes"] <= budget_bytes)
    pruned = _row(doc, "article", "Pruned-70%")
    if pruned:
        article = ARTICLE_TABLE["Pruned-70%"]["mape_pct"]
        add(f"article config Pruned-70%: every seed <= article's {article:.2f}",
            ", ".join(f"{m:.2f}" for m in pruned["mape_per_seed"]), max(pruned["mape_per_seed"]) <= article)
    article_meta = next((c for c in doc["configs"] if c["name"] == "article"), None)
    if article_meta:
        add(f"article table ({doc['seeds']} seeds, every variant) in under 30 minutes on {doc['machine']['cpus']} cores",
            f"{article_meta['wall_seconds'] / 60:.1f} min", article_meta["wall_seconds"] < 1800)
    edge_meta = next((c for c in doc["configs"] if c["name"] == "edge"), None)
    if edge_meta and "baselines_wall_seconds" in doc:
        seconds = edge_meta["wall_seconds"] + doc["baselines_wall_seconds"]
        add(f"edge configuration ({doc['seeds']} seeds) with rules, peers and floor in under 20 minutes on "
            f"{doc['machine']['cpus']} cores", f"{seconds / 60:.1f} min", seconds < 1200)
    add(f"whole table on {doc['machine']['cpus']} cores (reported)", f"{doc['wall_seconds'] / 60:.1f} min", True)
    return "\n".join(lines)


def faults_table(cases: list[dict]) -> str:
    """`bench/results/faults.json`: one row per fault case, passed or not, and a count."""
    lines = ["| case | expected | observed | passed |", "|---|---|---|:-:|"]
    for case in cases:
        cells = [str(case[k]).replace("|", "\\|").replace("\n", " ") for k in ("name", "expected", "observed")]
        lines.append(f"| {' | '.join(cells)} | {'yes' if case['passed'] else '**no**'} |")
    passed = sum(bool(c["passed"]) for c in cases)
    return "\n".join(lines + ["", f"{passed} of {len(cases)} cases passed."])


def ingest_scale_tables(doc: dict) -> str:
    """`bench/results/ingest_scale.json`: the sales table beside the reference store, each measure, and targets."""
    def paired(records: list[dict], key: str, columns: list[str]) -> str:
        head = [key] + [f"{c} ({arm})" for c in columns for arm in ("sales table", "reference")]
        lines = ["| " + " | ".join(head) + " |", "|" + "--:|" * len(head)]
        for value in dict.fromkeys(r[key] for r in records):
            row = {r["impl"]: r for r in records if r[key] == value}
            cells = [_cell(value)] + [_cell(row.get(arm, {}).get(c)) if row.get(arm, {}).get(c) is not None else "-"
                                      for c in columns for arm in ("sales table", "reference")]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    parts = []
    if "files" in doc:
        parts.append("One file into an empty store:\n\n" + paired(doc["files"], "mb", ["rows_per_s", "peak_rss_mb"]))
    if "one_more_file" in doc:
        parts.append("One more daily file (seconds):\n\n" + paired(doc["one_more_file"], "files_before", ["seconds"]))
    if "load" in doc:
        parts.append("A 365-day load:\n\n" + paired(doc["load"], "series",
                                                        ["seconds", "peak_rss_mb", "frame_mb", "peak_over_frame"]))
    if "targets" in doc:
        lines = ["| target | measured | met |", "|---|---|:-:|"]
        lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |" for t in doc["targets"]]
        parts.append("Targets:\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def mutation_table(doc: dict) -> str:
    """`bench/results/mutation.json`: per protocol module its mutants, how they ended and its score against the
    target; then the command, and the surviving mutants that are not equivalent (the gaps left)."""
    lines = ["| module | file | mutants | killed | timeout | survived | no tests | equivalent | score | target met |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|:-:|"]

    def row(label: str, file: str, counts: dict) -> str:
        cells = [counts[k] for k in ("mutants", "killed", "timeout", "survived", "no_tests", "equivalent")]
        met = "yes" if counts["score_pct"] >= doc["target_pct"] else "**no**"
        return (f"| {label} | {file} | " + " | ".join(f"{c:,}" for c in cells)
                + f" | {counts['score_pct']:.1f} % | {met} |")

    lines += [row(m["module"], f"`{m['file']}`", m) for m in doc["modules"]]
    lines.append(row("**all**", "", doc))
    gaps = [s for s in doc["survivors"] if not s["equivalent"]]
    took = f"{doc['wall_seconds'] / 60:.1f} min" if doc.get("wall_seconds") is not None else "time not recorded"
    lines += ["", f"Target {doc['target_pct']:.0f} % per module and overall; {doc['tool']} on {doc['machine']['cpus']} "
              f"cores, {took}: `{doc['command']}` (tests: `{doc['tests']}`). "
              f"{len(gaps):,} surviving mutants are not equivalent (gaps the tests leave open), "
              f"{doc['equivalent']:,} are equivalent; each is listed with its line and reason in the JSON."]
    runs: dict[str, list[dict]] = {}
    for m in doc["modules"]:
        runs.setdefault(m.get("measured_by", doc["command"]), []).append(m)
    if len(runs) > 1:
        lines.append("The modules were measured by separate runs (a module's own code unchanged since): " + "; ".join(
            f"{', '.join(m['module'] for m in group)} by `{command}` ("
            + (f"{group[0]['wall_seconds'] / 60:.1f} min" if group[0].get("wall_seconds") is not None else
               "time not recorded") + ")" for command, group in runs.items()) + ".")
    if doc.get("not_checked"):
        lines.append(f"The run was stopped before {doc['not_checked']:,} mutants were tested; they count as not "
                     "detected.")
    return "\n".join(lines)


def generalisation_targets(doc: dict, budget_bytes: int = 6000) -> str:
    """Per subset: the INT8 model against both peers and the noise floor (within 0.5 points)."""
    lines = ["| subset | INT8 MAPE | bytes | GLM profile peer | LightGBM peer | floor | below both peers | "
             "within 0.5 of floor, not worse than the profile peer |", "|---|--:|--:|--:|--:|--:|:-:|:-:|"]
    for run in doc["runs"]:
        mape, glm, lgbm = run["int8_mape_mean"], run.get("glm_profile_mape"), run.get("lightgbm_mape")
        fits = run["tflite_bytes"] <= budget_bytes
        below = glm is not None and lgbm is not None and mape < min(glm, lgbm) and fits
        near = glm is not None and mape - run["noise_floor_mape"] <= 0.5 and mape <= glm and fits
        lines.append(f"| {run['subset']} | {mape:.2f} ± {run['int8_mape_std']:.2f} | {run['tflite_bytes']:,} | "
                     f"{_num(glm)} | {_num(lgbm)} | {run['noise_floor_mape']:.2f} | {'yes' if below else 'no'} | "
                     f"{'yes' if near else 'no'} |")
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:.2f}"
