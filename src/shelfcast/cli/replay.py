"""`shelfcast replay`: the nightly loop over many days on a simulated clock (`shelfcast.loop.replay`)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import List, Optional

import typer

from shelfcast.cli._console import get_console, stderr_to
from shelfcast.config import load_settings


def replay(
    data: Optional[Path] = typer.Option(None, help="Kaggle train.csv or its zip (default: the synthetic generator)"),
    stores: str = typer.Option("1-5"), items: str = typer.Option("1-10"),
    start: str = typer.Option("2017-01-01", help="first simulated day; history before it is one backfill"),
    end: str = typer.Option("2017-12-31", help="last simulated day"),
    policy: str = typer.Option("weekly", help="retraining: frozen, monthly, weekly or nightly"),
    warm_start: bool = typer.Option(True, "--warm-start/--cold-start", help="retrains fine-tune the champion"),
    stores_simulated: Optional[int] = typer.Option(None, help="store devices syncing and forecasting (default: "
                                                   "every store of the panel; the first follows canary)"),
    inject: List[str] = typer.Option([], "--inject", help="KIND:key=value,... e.g. level-shift:store=4,"
                                     "date=2017-03-01,factor=1.4 (repeatable; kinds: level-shift, weekday-profile, "
                                     "feed-outage, new-item, store-closed, broken-candidate, lossy-int8)"),
    config: str = typer.Option("replay", help="retrain preset or JSON file for every night"),
    epochs: Optional[int] = typer.Option(None, help="override the preset's epochs"),
    seed: int = typer.Option(0),
    folder: Optional[Path] = typer.Option(None, help="the replay's folder (stack, days.jsonl); running again with "
                                          "the same folder resumes (default: <home>/replays/<policy>-<start>-<end>)"),
    out: Optional[Path] = typer.Option(None, help="merge the result into this JSON (e.g. bench/results/replay.json)"
                                       " and draw its plot beside it"),
    keep_stack: bool = typer.Option(False, help="leave the replay's servers running to browse its runs"),
    report: bool = typer.Option(False, help="only report the days the folder has recorded so far (a replay still "
                                "going or stopped), running none"),
) -> None:
    """Replay the loop day by day: deliveries, ingest, live checks, the policy's retrains and promotions, and
    stores syncing and forecasting; scored by what the stores were served."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from shelfcast.cli.pipeline import _quiet_logs, _retrain_config
    from shelfcast.loop.replay import Injection, Replay, ReplayOptions
    from shelfcast.stack.local import LocalStack

    _quiet_logs()
    console, settings = get_console(), load_settings()
    options = ReplayOptions(
        data=data, stores=stores, items=items, start=_day(start, "--start"), end=_day(end, "--end"), policy=policy,
        warm_start=warm_start, stores_simulated=stores_simulated, injections=[Injection.parse(s) for s in inject],
        config=_retrain_config(config, None, None, epochs, None, None, None, seed), seed=seed,
    )
    folder = folder or Path(settings.home) / "replays" / f"{policy}-{options.start}-{options.end}"
    log_path = folder / "replay.log"
    if report:  # the replay's stack comes up for the channels' logs, then goes down again
        runner = Replay(folder, options, settings, say=console.print)
        with stderr_to(log_path):
            LocalStack(runner.settings).up()
            try:
                doc = runner.report()
            finally:
                LocalStack(runner.settings).down()
        return _finish(console, doc, folder / "report.json", out)
    folder.mkdir(parents=True, exist_ok=True)
    console.print(f"[dim]replay folder {folder}; the servers' and libraries' own output goes to {log_path}[/dim]")
    with stderr_to(log_path), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                       transient=True) as progress:
        runner = Replay(folder, options, settings, say=lambda m: progress.console.print(f"[cyan]>[/cyan] {m}"),
                        progress=progress)
        try:
            doc = runner.run()
        finally:
            if not keep_stack:
                LocalStack(runner.settings).down()
    _finish(console, doc, folder / "result.json", out)


def _finish(console, doc: dict, result: Path, out: Path | None) -> None:
    from shelfcast.bench.replay import merge_result, render_line

    console.print(render_line(doc))
    result.write_text(json.dumps(doc, indent=1, default=str))
    console.print(f"result: {result}")
    if out is not None:
        png = merge_result(out, doc)
        console.print(f"merged into {out}; plot {png}")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; write YYYY-MM-DD", param_hint=option) from None


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
