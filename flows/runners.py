"""The task runner of the retrain fan-out, chosen by configuration (`RetrainConfig.task_runner`).

`thread` (default): a thread pool in the flow's process; with one worker the variants run one after another,
which is the fastest choice on a two-core machine because TensorFlow already uses both cores.
`dask`: a local Dask cluster of `workers` processes on 127.0.0.1, or an existing cluster (`dask_address`),
for when one machine is not enough (see infra/README.md). Workers import the `flows` package, so the
repository root goes on their `PYTHONPATH`, and they read the night's inputs from the night's work folder,
which must be shared storage for a remote cluster.
"""

from __future__ import annotations

from pathlib import Path

def make_task_runner(config, workdir: Path | None = None):
    if config.task_runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.workers)
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
