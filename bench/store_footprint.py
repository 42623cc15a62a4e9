"""What a store device pays to run shelfcast: memory, start-up time and disk, against the trainer's stack.

One command, every arm measured here, each in a fresh interpreter that reports its own peak resident memory
(VmHWM) and the trainer packages it loaded:

1. bare          Python with numpy imported: the floor any Python forecaster starts from;
2. store sync    `shelfcast store sync` against a local SeaweedFS server: pointer, manifest and model download,
                 sha256 and size checks, LiteRT load and one forecast, atomic swap;
3. store predict `shelfcast store predict` for one store's 50 items from a CSV of their recent raw sales;
4. reference     the same 50 forecasts with the same LSTM-16 in Keras on TensorFlow (what a device would run
                 without the `.tflite` path).

Disk: the bytes of the installed files (each distribution's RECORD, in this environment) of the dependency
closure of `shelfcast[store]` against that of `shelfcast[trainer]`.

The model is a real fused-LSTM INT8 `.tflite` on the `edge` input specification (56 days, window-mean level,
calendar inputs) with random weights: its content does not matter here, its size and loading do.

    .venv/bin/python bench/store_footprint.py [--items 50] [--out bench/results/store_footprint.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shelfcast.bench.readme import write_result  # noqa: E402
from shelfcast.compress.export import ExportJob, export_many  # noqa: E402
from shelfcast.device import TRAINER_ONLY_PACKAGES  # noqa: E402
from shelfcast.delivery.access import LOCAL_BUCKET, LOCAL_KEYS  # noqa: E402
from shelfcast.delivery.channels import move_pointer  # noqa: E402
from shelfcast.delivery.signing import KeyRing, SignedRepository  # noqa: E402
from shelfcast.delivery.publish import make_manifest, publish_model  # noqa: E402
from shelfcast.contract.features import InputSpec, build_inputs  # noqa: E402
from shelfcast.stack.seaweedfs import access_identities, start_seaweedfs  # noqa: E402
from shelfcast.contract.objects import ObjectStore, make_s3_client  # noqa: E402

CHANNEL, MODEL, STORE_ID, UNITS = "stable", "shelfcast-demand", 7, 16

# Appended to every child: its peak RSS and which trainer packages it loaded, as one JSON line on stderr. The
# peak is VmHWM of the process's own address space: `ru_maxrss` would also count the parent's resident memory
# at the fork that started the child (Linux carries it over the exec).
REPORT = f"""
import json as _j, sys as _s
_hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
_loaded = sorted({{m.split(".")[0] for m in _s.modules}} & set({TRAINER_ONLY_PACKAGES!r}))
print("FOOTPRINT " + _j.dumps({{"peak_rss_kb": _hwm, "trainer_packages": _loaded}}), file=_s.stderr)
"""


def child(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh interpreter; returns its wall seconds, peak RSS (MB) and loaded trainer packages."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code + REPORT], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("FOOTPRINT ")]
    report = json.loads(line.removeprefix("FOOTPRINT "))
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(report["peak_rss_kb"] / 1024, 1),
            "trainer_packages": report["trainer_packages"], "stdout": done.stdout}


def store_command(args: list[str]) -> str:
    return f"import sys\nfrom shelfcast.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n" \
           f"    assert not e.code, e.code\n"


def closure(requirements: list[str]) -> set[str]:
    """Installed distributions needed by `requirements` (markers evaluated, extras followed), names normalised."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        key = name + "".join(f"[{e}]" for e in sorted(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in set(req.extras) | {""}):
                todo.append(Requirement(str(dep).split(";")[0]))
    return {k.split("[")[0] for k in seen}


def installed_bytes(names: set[str]) -> int:
    total = 0
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        for file in files:
            path = Path(file.locate())
            if path.is_file():
                total += path.stat().st_size
    return total


def package_bytes() -> int:
    return sum(p.stat().st_size for p in (ROOT / "src" / "shelfcast").rglob("*.py"))


def write_sales(path: Path, items: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """A CSV of one store's daily sales; returns the dates (days,) and the sales (items, days)."""
    rng = np.random.default_rng(5)
    dates = np.arange(np.datetime64("2017-12-31") - days + 1, np.datetime64("2018-01-01"))
    weekday = 1 + 0.25 * np.sin(2 * np.pi * np.arange(days) / 7)
    sales = rng.poisson(np.outer(20 + np.arange(1, items + 1), weekday))
    rows = ["date,store,item,sales"]
    for item in range(items):
        rows += [f"{d},{STORE_ID},{item + 1},{s}" for d, s in zip(dates, sales[item])]
    path.write_text("\n".join(rows) + "\n")
    return dates, sales


def make_model(folder: Path, spec: InputSpec, dates: np.ndarray, sales: np.ndarray) -> tuple[list[np.ndarray], bytes]:
    """An INT8 LSTM-16 with random weights, calibrated on earlier windows of the same sales (not the last one,
    which the store forecasts from), as the nightly export calibrates on training windows."""
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.2, (spec.n_features, 4 * UNITS)), rng.normal(0, 0.2, (UNITS, 4 * UNITS)),
               np.zeros(4 * UNITS), rng.normal(0, 0.2, (UNITS, 1)), np.ones(1)]
    weights = [w.astype(np.float32) for w in weights]
    starts = range(0, sales.shape[1] - spec.lookback - 7, 3)
    raw = np.concatenate([sales[:, o:o + spec.lookback] for o in starts]).astype(np.float64)
    windows = np.concatenate([np.tile(dates[o:o + spec.lookback], (len(sales), 1)) for o in starts])
    calibration = build_inputs(raw, windows, spec)
    (path,) = export_many([ExportJob(weights, UNITS, spec, "int8", folder / "model.tflite", calibration)])
    if isinstance(path, Exception):
        raise path
    return weights, path.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50, help="items of the store (the Kaggle data has 50)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store_footprint.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    spec = InputSpec(lookback=56, scaling="window_mean", calendar=True)

    with tempfile.TemporaryDirectory(prefix="shelfcast-bench-") as tmp:
        tmp = Path(tmp)
        dates, sales = write_sales(tmp / "recent.csv", args.items, spec.lookback + 120)
        weights, model = make_model(tmp, spec, dates, sales)
        np.savez(tmp / "weights.npz", *weights)
        server = start_seaweedfs(tmp / "s3", access_identities(LOCAL_BUCKET, LOCAL_KEYS))
        try:
            url = server.urls["s3"]
            trainer = ObjectStore(make_s3_client(url, *LOCAL_KEYS["trainer"]), LOCAL_BUCKET)
            trainer.ensure_bucket(wait_s=15)
            manifest = publish_model(trainer, model, make_manifest(model, name=MODEL, version="1",
                                                                   input_spec=spec.to_dict()))
            signer = SignedRepository(trainer, KeyRing(tmp / "keys"))
            signer.init()
            (tmp / "root.json").write_bytes(signer.root_bytes())
            move_pointer(trainer, CHANNEL, manifest, action="promote", actor="bench", signer=signer)
            env = {"SHELFCAST_S3_ENDPOINT_URL": url, "SHELFCAST_BUCKET": LOCAL_BUCKET,
                   "SHELFCAST_STORE_ACCESS_KEY": LOCAL_KEYS["store"][0],
                   "SHELFCAST_STORE_SECRET_KEY": LOCAL_KEYS["store"][1], "TF_CPP_MIN_LOG_LEVEL": "2"}
            folder = str(tmp / "store")

            print(f"model {len(model):,} B; {args.items} items; server {url}", flush=True)
            bare = child("import numpy\n")
            sync = child(store_command(["store", "sync", "--store-id", str(STORE_ID), "--channel", CHANNEL,
                                        "--dir", folder, "--trusted-root", str(tmp / "root.json")]), env)
            if "status=updated" not in sync["stdout"]:
                raise SystemExit(f"the store did not install the model: {sync['stdout']}")
            predict = child(store_command(["store", "predict", "--dir", folder, "--sales", str(tmp / "recent.csv"),
                                           "--out", str(tmp / "forecast.csv")]), env)
            store_forecast = np.loadtxt(tmp / "forecast.csv", delimiter=",", skiprows=1, usecols=3)
            reference = child(f"""
import numpy as np
from shelfcast.device.forecast import read_recent_sales, tomorrow_inputs
from shelfcast.contract.features import InputSpec, build_inputs
from shelfcast.model.lstm import build_lstm
spec = InputSpec.from_dict({spec.to_dict()!r})
model = build_lstm({UNITS}, spec)
stored = np.load({str(tmp / "weights.npz")!r})
model.set_weights([stored[f"arr_{{i}}"] for i in range(len(stored.files))])
keys, raw, dates, day, skipped = tomorrow_inputs(read_recent_sales({str(tmp / "recent.csv")!r}, None), spec.lookback)
forecast = spec.unscale(model.predict(build_inputs(raw, dates, spec), verbose=0), raw)
np.savetxt({str(tmp / "reference.csv")!r}, np.asarray(forecast).reshape(-1))
""", env)
            keras_forecast = np.loadtxt(tmp / "reference.csv")
        finally:
            server.stop()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = pyproject.get("dependencies", [])
    extras = pyproject["optional-dependencies"]
    store_dists, trainer_dists = closure(base + extras["store"]), closure(base + extras["trainer"])
    own = package_bytes()
    store_bytes, trainer_bytes = installed_bytes(store_dists) + own, installed_bytes(trainer_dists) + own

    store_peak = max(sync["peak_rss_mb"], predict["peak_rss_mb"])
    doc = {
        "items": args.items,
        "model_bytes": len(model),
        "bare_python_numpy_peak_rss_mb": bare["peak_rss_mb"],
        "store_sync_peak_rss_mb": sync["peak_rss_mb"],
        "store_predict_peak_rss_mb": predict["peak_rss_mb"],
        "keras_reference_peak_rss_mb": reference["peak_rss_mb"],
        "store_to_reference_rss_ratio": round(store_peak / reference["peak_rss_mb"], 3),
        "store_over_bare_python_mb": round(store_peak - bare["peak_rss_mb"], 1),
        "store_predict_seconds": predict["seconds"],
        "keras_reference_seconds": reference["seconds"],
        "store_to_reference_time_ratio": round(predict["seconds"] / reference["seconds"], 3),
        "store_sync_seconds": sync["seconds"],
        "store_install_mb": round(store_bytes / 2**20, 1),
        "trainer_install_mb": round(trainer_bytes / 2**20, 1),
        "store_to_trainer_install_ratio": round(store_bytes / trainer_bytes, 4),
        "store_trainer_packages_loaded": sync["trainer_packages"] + predict["trainer_packages"],
        "int8_vs_keras_forecast_mean_abs_diff": round(float(np.mean(np.abs(store_forecast - keras_forecast))), 3),
        "forecast_mean": round(float(np.mean(keras_forecast)), 2),
        "store_distributions": sorted(store_dists),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "note": ("peak RSS of each process (VmHWM); seconds are whole-process wall time, start-up and imports "
                 "included, which is what a device pays per forecast run; install sizes are the installed files "
                 "of each dependency closure in this environment"),
        "command": "python bench/store_footprint.py" + (f" --items {args.items}" if args.items != 50 else ""),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    for key in ("store_sync_peak_rss_mb", "store_predict_peak_rss_mb", "keras_reference_peak_rss_mb",
                "store_predict_seconds", "keras_reference_seconds", "store_install_mb", "trainer_install_mb"):
        print(f"{key:32s} {doc[key]}")
    print(f"store / Keras reference: memory {doc['store_to_reference_rss_ratio']}, time "
          f"{doc['store_to_reference_time_ratio']}; store / trainer install {doc['store_to_trainer_install_ratio']}")
    write_result(args.out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
