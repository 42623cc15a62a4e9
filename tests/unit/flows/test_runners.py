"""The task runner a night's configuration chooses (flows/runners.py), built but not started."""

from __future__ import annotations

import logging

import pytest

from shelfcast.flows.runners import make_task_runner
from shelfcast.pipeline.config import RetrainConfig

pytestmark = pytest.mark.unit
QUIET = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}


def test_ray_starts_a_quiet_local_instance_of_the_configured_cpus_on_loopback(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    runner = make_task_runner(RetrainConfig(task_runner="ray", workers=3))
    assert runner.address is None
    assert runner.init_kwargs == {**QUIET, "num_cpus": 3, "_node_ip_address": "127.0.0.1", "namespace": "prefect"}


def test_ray_joins_the_cluster_ray_address_names_and_sizes_nothing_itself(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    runner = make_task_runner(RetrainConfig(task_runner="ray", workers=3))
    assert runner.address == "ray://head.example:10001"
    assert runner.init_kwargs == {**QUIET, "namespace": "prefect"}  # ray.init refuses num_cpus for a cluster
