"""Store sync at fleet scale: N simulated stores (threads, each with its own S3 client, folder and state) poll one
channel of a local SeaweedFS server concurrently, first with nothing new, then while a new version is promoted.

Each store runs the real `StoreClient.sync()`: the signed metadata refreshed and verified (TUF: the next root looked
for, the timestamp downloaded and its signature checked; snapshot and targets only when they changed), and on a
change the signed pointer, manifest and model downloaded and checked against their signed lengths and sha256, a
LiteRT load and one forecast, and the atomic swap on disk. Every byte read from S3 is counted (`bytes_received`). The models are real fused-LSTM INT8 files (LSTM-16 on the `edge` input
specification, random weights: their content does not matter here, their size and loading do).

Phases:
1. install: every store syncs once (downloads version 1);
2. unchanged: every store polls `--polls` times back to back (all stores at once): polls per second, latency
   percentiles, model bytes transferred (must be 0) and all bytes read per poll (the signed timestamp);
3. update: every store polls every `--interval` seconds (+-10 % jitter); version 2 is promoted; the time until
   the last store serves it is measured from the pointer move. With the production `--every 15m` this time is
   bounded by the poll interval; the benchmark compresses the interval to measure the protocol, not the wait.

    .venv/bin/python bench/store_sync.py [--stores 200] [--polls 5] [--interval 1.0] [--out bench/results/store_sync.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shelfcast.bench.readme import write_result  # noqa: E402
from shelfcast.compress.export import ExportJob, export_many  # noqa: E402
from shelfcast.delivery.access import LOCAL_BUCKET, LOCAL_KEYS  # noqa: E402
from shelfcast.delivery.channels import move_pointer  # noqa: E402
from shelfcast.device.sync import StoreClient  # noqa: E402
from shelfcast.delivery.publish import make_manifest, publish_model  # noqa: E402
from shelfcast.delivery.signing import KeyRing, SignedRepository  # noqa: E402
from shelfcast.contract.features import InputSpec  # noqa: E402
from shelfcast.stack.seaweedfs import access_identities, start_seaweedfs  # noqa: E402
from shelfcast.contract.objects import ObjectStore, make_s3_client  # noqa: E402

CHANNEL, MODEL = "stable", "shelfcast-demand"


def make_models(folder: Path) -> tuple[InputSpec, bytes, bytes]:
    """Two INT8 LSTM-16 files on the edge input spec (56 days, window-mean, calendar), random weights."""
    spec = InputSpec(lookback=56, scaling="window_mean", calendar=True)
    jobs = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        units, features = 16, spec.n_features
        weights = [rng.normal(0, 0.2, (features, 4 * units)), rng.normal(0, 0.2, (units, 4 * units)),
                   np.zeros(4 * units), rng.normal(0, 0.2, (units, 1)), np.ones(1)]
        calibration = rng.uniform(0.0, 2.0, (64, spec.lookback, features)).astype(np.float32)
        jobs.append(ExportJob([w.astype(np.float32) for w in weights], units, spec, "int8",
                              folder / f"v{seed}.tflite", calibration))
    paths = export_many(jobs)
    for path in paths:
        if isinstance(path, Exception):
            raise path
    return spec, paths[0].read_bytes(), paths[1].read_bytes()


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 2)


def run_all(clients: list[StoreClient], work) -> list:
    """Run `work(index, client)` in one thread per store, all released together; returns their results."""
    results = [None] * len(clients)
    start = threading.Barrier(len(clients) + 1)

    def body(i, client):
        start.wait()
        results[i] = work(i, client)

    threads = [threading.Thread(target=body, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--polls", type=int, default=5, help="polls per store in the unchanged phase")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval (s) in the update phase")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store_sync.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    with tempfile.TemporaryDirectory(prefix="shelfcast-bench-") as tmp:
        tmp = Path(tmp)
        spec, v1, v2 = make_models(tmp)
        server = start_seaweedfs(tmp / "s3", access_identities(LOCAL_BUCKET, LOCAL_KEYS))
        try:
            url = server.urls["s3"]
            trainer = ObjectStore(make_s3_client(url, *LOCAL_KEYS["trainer"]), LOCAL_BUCKET)
            trainer.ensure_bucket(wait_s=15)
            manifests = {version: publish_model(trainer, data, make_manifest(
                data, name=MODEL, version=version, input_spec=spec.to_dict(), metrics={"mape_pct": 13.0}))
                for version, data in (("1", v1), ("2", v2))}
            signer = SignedRepository(trainer, KeyRing(tmp / "keys"))
            signer.init()
            trusted_root = signer.root_bytes()
            move_pointer(trainer, CHANNEL, manifests["1"], action="promote", actor="bench", signer=signer)

            clients = [StoreClient(ObjectStore(make_s3_client(url, *LOCAL_KEYS["store"], connect_timeout=10,
                                                              read_timeout=60), LOCAL_BUCKET, attempts=3),
                                   CHANNEL, tmp / "stores" / f"store-{i:03d}", store_id=i, trusted_root=trusted_root)
                       for i in range(args.stores)]
            print(f"{args.stores} stores, model v1 {len(v1):,} B, v2 {len(v2):,} B; server {url}", flush=True)

            t = time.perf_counter()
            installed = run_all(clients, lambda i, c: c.sync())
            install_s = time.perf_counter() - t
            failed = [r.message for r in installed if r.serving != "1"]
            if failed:
                raise SystemExit(f"{len(failed)} stores failed the first sync: {failed[:3]}")
            print(f"install: all {args.stores} stores serve v1 after {install_s:.2f}s", flush=True)

            alone = [clients[0].sync().seconds for _ in range(20)]  # one store, no contention: per-poll cost
            t = time.perf_counter()
            polled = run_all(clients, lambda i, c: [c.sync() for _ in range(args.polls)])
            unchanged_s = time.perf_counter() - t
            polls = [r for rs in polled for r in rs]
            latencies = [r.seconds for r in polls]
            statuses = {s: sum(r.status == s for r in polls) for s in sorted({r.status for r in polls})}
            unchanged_bytes = sum(r.model_bytes for r in polls)
            unchanged_received = sum(r.bytes_received for r in polls) / len(polls)
            print(f"unchanged: {len(polls)} polls in {unchanged_s:.2f}s = {len(polls) / unchanged_s:.0f}/s, "
                  f"p50 {percentile_ms(latencies, 50)} ms, p99 {percentile_ms(latencies, 99)} ms, "
                  f"model bytes {unchanged_bytes}, {unchanged_received:.0f} bytes read per poll, {statuses}",
                  flush=True)

            moved_at = {"t": None}
            updated_at: dict[int, float] = {}
            update_bytes, update_polls = [0] * len(clients), [0] * len(clients)
            update_received = [0] * len(clients)  # all bytes read by the poll that took version 2
            stop = threading.Event()

            def follow(i, client):
                rng = np.random.default_rng(i)
                while not stop.is_set():
                    result = client.sync()
                    update_polls[i] += 1
                    update_bytes[i] += result.model_bytes
                    if result.serving == "2" and i not in updated_at:
                        updated_at[i] = time.perf_counter()
                        update_received[i] = result.bytes_received
                    stop.wait(args.interval * (1 + rng.uniform(-0.1, 0.1)))

            runner = threading.Thread(target=run_all, args=(clients, follow), daemon=True)
            runner.start()
            time.sleep(2 * args.interval)  # every store is polling at its pace
            moved_at["t"] = time.perf_counter()
            move_pointer(trainer, CHANNEL, manifests["2"], action="promote", actor="bench", signer=signer)
            deadline = time.perf_counter() + 60 * args.interval + 120
            while len(updated_at) < len(clients) and time.perf_counter() < deadline:
                time.sleep(0.05)
            stop.set()
            runner.join()
            if len(updated_at) < len(clients):
                raise SystemExit(f"only {len(updated_at)} of {len(clients)} stores took version 2")
            waits = sorted(t - moved_at["t"] for t in updated_at.values())
            until_all = waits[-1]
            print(f"update: every store serves v2 {until_all:.2f}s after the pointer moved "
                  f"(median {np.median(waits):.2f}s, polling every {args.interval}s)", flush=True)
        finally:
            server.stop()

    doc = {
        "stores": args.stores,
        "polls_per_s": round(len(polls) / unchanged_s, 1),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "model_bytes_when_unchanged": unchanged_bytes,
        "bytes_read_per_unchanged_poll": round(unchanged_received, 1),
        "bytes_read_per_update": round(float(np.mean(update_received)), 1),
        "seconds_until_all_updated": round(until_all, 2),
        "single_store_p50_ms": percentile_ms(alone, 50),
        "unchanged_polls": len(polls),
        "unchanged_statuses": statuses,
        "update_poll_interval_s": args.interval,
        "median_seconds_until_updated": round(float(np.median(waits)), 2),
        "update_model_bytes_total": sum(update_bytes),
        "update_model_bytes_per_store": sorted(set(update_bytes)),
        "model_bytes": {"v1": len(v1), "v2": len(v2)},
        "install_seconds": round(install_s, 2),
        "server": "SeaweedFS 4.48 (weed mini), single node, 127.0.0.1",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "note": ("all stores are threads of one Python process on this machine's cores, so latency under "
                 "concurrency includes waiting for the CPU; single_store_p50_ms is one store polling alone"),
        "command": "python bench/store_sync.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(args.out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
