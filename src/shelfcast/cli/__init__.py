"""The `shelfcast` command: the front door to every flow.

`shelfcast store ...` is dispatched before Typer is imported, because a store device installs
`shelfcast[store]` only (numpy, boto3, ai-edge-litert). Every other area registers its commands from its
own module listed in `AREAS`. Errors are one line each (`cli/_console.py`); `--debug` anywhere before `--`
shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

# Each module has `register(app: typer.Typer) -> None`.
AREAS = [
    "shelfcast.cli.bench",
    "shelfcast.cli.pipeline",
    "shelfcast.cli.alerts",
    "shelfcast.cli.delivery",
    "shelfcast.cli.keys",
    "shelfcast.cli.replay",
    "shelfcast.cli.automation",
]


def build_app():
    import typer

    app = typer.Typer(
        name="shelfcast",
        help="Fresh, small and trustworthy next-day demand forecasts for in-store edge devices.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for module in AREAS:
        importlib.import_module(module).register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv[:argv.index("--") if "--" in argv else len(argv)]:
        argv.remove("--debug")
        os.environ["SHELFCAST_DEBUG"] = "1"
    if argv[:1] == ["store"]:
        from shelfcast.device.cli import main as store_main

        raise SystemExit(store_main(argv[1:]))
    from shelfcast.cli._console import debug_enabled, report

    try:
        build_app()(args=argv, prog_name="shelfcast")
    except KeyboardInterrupt:
        report("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # every failure is one line; the traceback only with --debug
        if debug_enabled():
            raise
        report(exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
