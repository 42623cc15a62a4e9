"""`shelfcast store sync|predict|status`: the store device's command line (argparse; numpy, boto3, ai-edge-litert).

Settings come from the same environment variables as the trainer's `Settings`, with the same defaults, so the
store works against the local stack as it is and against AWS once they are set:
`SHELFCAST_S3_ENDPOINT_URL` (empty for AWS S3), `SHELFCAST_S3_REGION`, `SHELFCAST_BUCKET`,
`SHELFCAST_STORE_ACCESS_KEY`, `SHELFCAST_STORE_SECRET_KEY` (when unset: the store secret the local stack generated
in `$SHELFCAST_HOME/secrets.json`).
Exit status: 0 when the store serves a checked model (or the channel is still empty), 1 when a sync was refused
or failed (the store keeps its model), 2 for a usage or data error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

# Defaults mirror shelfcast.config.Settings (a test keeps them equal).
DEFAULTS = {
    "SHELFCAST_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
    "SHELFCAST_S3_REGION": "us-east-1",
    "SHELFCAST_BUCKET": "shelfcast",
    "SHELFCAST_STORE_ACCESS_KEY": "shelfcast-store",
    "SHELFCAST_HOME": ".shelfcast",
}


@dataclass(frozen=True)
class StoreSettings:
    endpoint_url: str | None
    region: str
    bucket: str
    access_key: str
    secret_key: str

    @classmethod
    def from_env(cls, env=None) -> "StoreSettings":
        env = os.environ if env is None else env
        get = lambda name: env.get(name, DEFAULTS[name])  # noqa: E731
        secret = env.get("SHELFCAST_STORE_SECRET_KEY") or _installation_secret(Path(get("SHELFCAST_HOME")))
        return cls(get("SHELFCAST_S3_ENDPOINT_URL") or None, get("SHELFCAST_S3_REGION"), get("SHELFCAST_BUCKET"),
                   get("SHELFCAST_STORE_ACCESS_KEY"), secret)

    def object_store(self, endpoint_url: str | None = None, bucket: str | None = None):
        from shelfcast.contract.objects import ObjectStore, make_s3_client

        client = make_s3_client(endpoint_url or self.endpoint_url, self.access_key, self.secret_key, self.region,
                                connect_timeout=5.0, read_timeout=60.0)
        return ObjectStore(client, bucket or self.bucket)


def _installation_secret(home: Path) -> str:
    """The store secret the local stack generated (`shelfcast.config.local_secret`); read only, never created here."""
    path = home / "secrets.json"
    try:
        return str(json.loads(path.read_text())["store"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"no store secret key: set SHELFCAST_STORE_SECRET_KEY (or SHELFCAST_HOME to the folder "
                         f"whose secrets.json `shelfcast stack up` wrote; {path} is missing or damaged)") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shelfcast store", description="Keep this store's forecasting model "
                                     "in sync with its channel and forecast tomorrow's sales.")
    commands = parser.add_subparsers(dest="command", required=True)

    sync = commands.add_parser("sync", help="pull the channel's model once, or every --every")
    sync.add_argument("--store-id", type=int, required=True)
    where = sync.add_mutually_exclusive_group(required=True)
    where.add_argument("--channel", help="the channel to follow (canary, stable, ...)")
    where.add_argument("--assignments", type=Path, help='fleet configuration JSON: {"default": "stable", '
                       '"channels": {"canary": [1, 2]}}')
    sync.add_argument("--dir", type=Path, required=True, help="the store's model folder")
    sync.add_argument("--every", help="poll forever at this interval (15m, 30s, 1h); once when absent")
    sync.add_argument("--jitter", type=float, default=0.1, help="spread polls by +- this fraction of --every")
    sync.add_argument("--max-polls", type=int, help="stop after this many polls (with --every)")
    sync.add_argument("--endpoint-url", help="S3 endpoint (default SHELFCAST_S3_ENDPOINT_URL)")
    sync.add_argument("--bucket", help="bucket (default SHELFCAST_BUCKET)")
    sync.add_argument("--json", action="store_true", help="one JSON object per poll instead of a text line")
    sync.add_argument("--trusted-root", type=Path, default=None,
                      help="the bucket's root metadata this store trusts at first (`shelfcast keys show --root-out`); "
                           "needed once, then kept in DIR/metadata (default SHELFCAST_TRUSTED_ROOT)")
    sync.add_argument("--max-model-bytes", type=int, default=None,
                      help="refuse a model larger than this device can hold, before downloading it (default 64 MiB)")

    predict = commands.add_parser("predict", help="forecast tomorrow for every item in a recent-sales CSV")
    predict.add_argument("--dir", type=Path, required=True, help="the store's model folder")
    predict.add_argument("--sales", type=Path, required=True, help="CSV date,store,item,sales of the recent days")
    predict.add_argument("--store-id", type=int, help="keep only this store's rows")
    predict.add_argument("--out", type=Path, help="write the forecast CSV here (default: standard output)")

    status = commands.add_parser("status", help="what the store serves and how its last sync went")
    status.add_argument("--dir", type=Path, required=True)
    return parser


def _sync(args) -> int:
    from shelfcast.device.sync import StoreClient, assigned_channel, parse_every

    if args.channel:
        channel = args.channel
    else:
        try:
            channel = assigned_channel(args.store_id, json.loads(args.assignments.read_text()))
        except (OSError, ValueError) as exc:
            print(f"error: --assignments {args.assignments}: {exc}", file=sys.stderr)
            return 2
    try:
        every = parse_every(args.every) if args.every else None
        if args.max_model_bytes is not None and args.max_model_bytes <= 0:
            raise ValueError(f"--max-model-bytes must be positive, got {args.max_model_bytes}")
        limit = {"max_model_bytes": args.max_model_bytes} if args.max_model_bytes else {}
        root_file = args.trusted_root or (Path(os.environ["SHELFCAST_TRUSTED_ROOT"])
                                          if os.environ.get("SHELFCAST_TRUSTED_ROOT") else None)
        trusted_root = root_file.read_bytes()[:64 * 1024 + 1] if root_file else None
        client = StoreClient(StoreSettings.from_env().object_store(args.endpoint_url, args.bucket), channel,
                             args.dir, store_id=args.store_id, trusted_root=trusted_root, **limit)
    except OSError as exc:
        print(f"error: --trusted-root {root_file}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def report(result) -> None:
        if args.json:
            print(json.dumps({"store_id": args.store_id, **result.__dict__}), flush=True)
        else:
            print(result.line(args.store_id), flush=True)

    if every is None:
        result = client.sync()
        report(result)
        return 0 if result.ok else 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client.run(every, stop=stop, max_polls=args.max_polls, jitter=args.jitter, report=report)
    return 0


def _predict(args) -> int:
    from shelfcast.device.forecast import predict_store
    from shelfcast.contract.errors import ModelLoadError, SalesSchemaError

    try:
        report = predict_store(args.dir, args.sales, args.store_id)
    except (SalesSchemaError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report.note:
        print(f"warning: {report.note}", file=sys.stderr)
    for reason in report.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    if args.out:
        args.out.write_text(report.to_csv())
        print(f"{len(report.forecasts)} forecasts for {report.forecasts[0].date if report.forecasts else '-'} "
              f"with model {report.version} -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(report.to_csv())
    return 0 if report.forecasts else 1


def _status(args) -> int:
    from shelfcast.device.sync import ACTIVE, STATE, read_json

    active, state = read_json(args.dir / ACTIVE), read_json(args.dir / STATE)
    print(json.dumps({"active": active, "last_sync": state}, indent=2, sort_keys=True))
    return 0 if active.get("current") else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"sync": _sync, "predict": _predict, "status": _status}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
