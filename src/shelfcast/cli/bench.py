"""`shelfcast bench ...`: benchmarks that print a table and write JSON (and a plot) for the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from shelfcast.bench.tables import COLUMNS, markdown_table, table_rows
from shelfcast.cli._console import get_console, stderr_to


def render_table(doc: dict):
    """The compression table for the terminal (Rich)."""
    from rich.table import Table

    table = Table(title=f"Compression benchmark - {doc['data']}, {doc['series']} series, {doc['seeds']} seeds")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("config", "variant") else "right")
    for cells in table_rows(doc):
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks that print tables and write JSON.", no_args_is_help=True)
    app.add_typer(bench, name="bench")
    _register_readme(bench)
    _register_generalisation(bench)

    @bench.command("compression")
    def compression(
        data: Optional[Path] = typer.Option(None, help="Kaggle train.csv or its zip; synthetic data when omitted"),
        stores: str = typer.Option("1-5", help="stores to use, e.g. 1-5 or 1,3,7"),
        items: str = typer.Option("1-10", help="items to use, e.g. 1-10"),
        seeds: int = typer.Option(3, min=1, help="training seeds per variant"),
        configs: str = typer.Option("article,edge", help="model configurations, comma separated"),
        epochs: Optional[int] = typer.Option(None, help="override the maximum training epochs (quick runs)"),
        variants: Optional[str] = typer.Option(None, help="override the variants, e.g. lstm16,lstm16+int8"),
        out: Path = typer.Option(Path("bench/results/compression.json"), help="JSON output; the PNG goes beside it"),
        markdown: Optional[Path] = typer.Option(None, help="also write the table as Markdown here"),
    ) -> None:
        """Train every variant over several seeds and compare sizes and accuracy with the article and baselines."""
        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from shelfcast.bench.compression import plot_pareto, run_benchmark
        from shelfcast.data.schema import load_sales, parse_range, select_series
        from shelfcast.data.synthetic import generate_sales
        from shelfcast.compress.configs import get_config

        console = get_console(width=200)
        chosen = [get_config(name.strip()) for name in configs.split(",") if name.strip()]
        if epochs:
            chosen = [c.with_train(epochs=epochs) for c in chosen]
        if variants:
            chosen = [c.with_variants(variants.split(",")) for c in chosen]
        store_ids, item_ids = parse_range(stores), parse_range(items)
        if data is not None:
            sales = load_sales(data, store_ids, item_ids)
            label = f"{data.name} stores {stores} items {items}"
        else:
            sales = select_series(generate_sales(seed=0), store_ids, item_ids)
            label = f"synthetic (seed 0) stores {stores} items {items}"
        log_path = _library_log(console)
        with stderr_to(log_path), Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                           console=console) as progress:
            task = progress.add_task("loading", total=None)

            def on_step(message: str) -> None:
                progress.update(task, description=escape(message))
                progress.console.log(escape(message))

            doc = run_benchmark(sales, chosen, seeds, label, on_step=on_step)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1, default=str))
        plot_pareto(doc, out.with_suffix(".png"))
        console.print(render_table(doc))
        if markdown:
            markdown.write_text(markdown_table(doc) + "\n")
        console.print(f"wrote {out} and {out.with_suffix('.png')} in {doc['wall_seconds'] / 60:.1f} min")


def _register_generalisation(bench: typer.Typer) -> None:
    @bench.command("generalisation")
    def generalisation(
        data: Path = typer.Option(..., help="Kaggle train.csv or its zip"),
        subsets: str = typer.Option("6-10:11-20,all:all", help="STORES:ITEMS subsets, comma separated"),
        config: str = typer.Option("edge", help="the model configuration to check"),
        variants: str = typer.Option("lstm16,lstm16+int8", help="variants to train on every subset"),
        seeds: int = typer.Option(3, min=1),
        epochs_per_100k: float = typer.Option(
            80.0, help="epoch cap scaled to the data: epochs = min(config's, this x 100k / training windows)"),
        out: Path = typer.Option(Path("bench/results/generalisation.json")),
    ) -> None:
        """The same configuration, untouched, on other store/item subsets and on every series.

        Subsets of an earlier run of the same configuration in OUT that this run does not repeat are kept.
        """
        from rich.markup import escape

        from shelfcast.bench.compression import generalisation_summary, merge_generalisation, run_benchmark
        from shelfcast.data.schema import load_sales, parse_range
        from shelfcast.compress.configs import get_config

        console = get_console(width=160)
        base = get_config(config).with_variants(variants.split(","))
        previous = json.loads(out.read_text()) if out.exists() else None
        runs, details = [], {}
        with stderr_to(_library_log(console)):
            for subset in subsets.split(","):
                stores, items = subset.split(":")
                sales = load_sales(data, parse_range(stores), parse_range(items))
                n_train = int(0.8 * len(sales))
                epochs = max(1, min(base.train.epochs, round(epochs_per_100k * 100_000 / n_train)))
                chosen = base.with_train(epochs=epochs)
                doc = run_benchmark(sales, [chosen], seeds, f"{data.name} stores {stores} items {items}",
                                    on_step=lambda m, s=subset: console.log(escape(f"[{s}] {m}")))
                details[subset] = doc
                runs.append(generalisation_summary(doc, subset, chosen.name))
                console.log(escape(f"[{subset}] {runs[-1]}"))
                out.parent.mkdir(parents=True, exist_ok=True)
                merged = merge_generalisation(previous, config, runs, details)
                out.write_text(json.dumps(merged, indent=1, default=str))
        console.print(f"wrote {out}")


def _library_log(console) -> Path:
    """Where TensorFlow's, absl's and the other libraries' own stderr goes while a benchmark runs (said once)."""
    from shelfcast.config import load_settings

    log_path = Path(load_settings().home) / "logs" / "bench.log"
    console.print(f"[dim]the libraries' own output goes to {log_path}[/dim]")
    return log_path


def _register_readme(bench: typer.Typer) -> None:
    @bench.command("readme")
    def readme(
        path: Path = typer.Option(Path("README.md"), help="the README to update"),
        results: Path = typer.Option(Path("bench/results"), help="where the benchmark JSON files are"),
    ) -> None:
        """Rewrite the README's result tables from the benchmark JSON files."""
        from shelfcast.bench.readme import update_readme

        for name in update_readme(path, results):
            typer.echo(f"table {name} <- {results / (name.removesuffix('-targets') + '.json')}")
