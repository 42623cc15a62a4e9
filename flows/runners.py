"""The task runner of the retrain fan-out, chosen by configuration (`RetrainConfig.task_runner`).

`thread` (default): a thread pool in the flow's process; with one worker the variants run one after another,
which is the fastest choice on a two-core machine because TensorFlow already uses both cores.
`dask`: a local Dask cluster of `workers` processes on 127.0.0.1, or an existing cluster (`dask_address`),
for when one machine is not enough (see infra/README.md). Workers import the `flows` package, so the
repository root goes on their `PYTHONPATH`, and they read the night's inputs from the bucket with the trainer's
`SHELFCAST_*` settings (`shelfcast.pipeline.night.read_bundle`), so a remote cluster needs no shared disk.
`ray`: a local Ray instance of `workers` CPUs (one worker process per CPU) on 127.0.0.1, or the cluster that
`RAY_ADDRESS` names (Ray's own setting, e.g. `ray://HEAD:10001`, set in the worker's environment), with the
same needs as a remote Dask cluster. Ray's own output stays out of the console: no dashboard, no worker logs
forwarded to the driver (they stay in Ray's session folder, /tmp/ray by default), warnings only, usage stats
off, and token authentication chosen explicitly (Ray's default for a new local instance, which otherwise warns
about it on every start).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path


def ray_init_kwargs(config) -> dict:
    """`ray.init` options: quiet, and for a local instance, bound to 127.0.0.1 with `workers` CPUs."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if os.environ.get("RAY_ADDRESS"):
        return quiet
    return {**quiet, "num_cpus": config.workers, "_node_ip_address": "127.0.0.1"}


def make_task_runner(config, workdir: Path | None = None):
    if config.task_runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.workers)
    if config.task_runner == "ray":
        # Before Ray is imported: it reads its authentication mode once, at import, and would then refuse the
        # token its own processes (which read the environment when they start) require.
        for name, value in (("RAY_AUTH_MODE", "token"), ("RAY_USAGE_STATS_ENABLED", "0")):
            os.environ.setdefault(name, value)
        from prefect_ray import RayTaskRunner

        return RayTaskRunner(address=os.environ.get("RAY_ADDRESS"), init_kwargs=ray_init_kwargs(config))
    from prefect_dask import DaskTaskRunner

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": config.workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            # TensorFlow keeps its default threads per worker: pinning each worker to one thread measured
            # slower on two cores (bench/pipeline_overhead.py).
            "env": {"TF_CPP_MIN_LOG_LEVEL": "2"},
            "local_directory": str(workdir / "dask") if workdir else None,
        },
    )
