"""`deployments/prefect.yaml` as Prefect reads it and as a worker on another machine runs it: Prefect's own model
of the file, its pull step functions, and the `SHELFCAST_*` job variables against `shelfcast.config.Settings`."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from shelfcast.config import Settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"

# Settings a worker's runs never read, each with the reason; every other setting must be a job variable.
NOT_FOR_WORKERS = {
    "trainer_secret_key": "a secret: from the worker's environment or its IAM role, never from a file in git",
    "store_secret_key": "the stores' identity, not the trainer's",
    "store_access_key": "the stores' identity, not the trainer's",
    "uploader_secret_key": "the uploader's identity (it writes landing/), not the trainer's",
    "uploader_access_key": "the uploader's identity (it writes landing/), not the trainer's",
    "root_key_file": "the offline root key, only for `shelfcast keys init|rotate` on an operator's machine",
    "prefect_api_url": "a worker's runs report to the PREFECT_API_URL the worker gives them",
    "postgres_url": "a secret (it holds the password): from the worker's environment",
    "prefect_database": "the stack's Prefect server's database; runs reach Prefect by its API URL",
    "mlflow_database": "the stack's MLflow server's backend; runs reach MLflow by its tracking URI",
}


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def shelfcast_env(project: dict) -> dict:
    env = project["definitions"]["work_pool"]["job_variables"]["env"]
    assert all(d["work_pool"]["job_variables"]["env"] == env for d in project["deployments"])
    return {name: value for name, value in env.items() if name.startswith("SHELFCAST_")}


def test_prefect_deploy_reads_the_file_and_every_pull_step_takes_its_arguments(project):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.deployments.steps.core import RESERVED_KEYWORDS, _get_step_fully_qualified_name_and_inputs
    from prefect.utilities.importtools import import_object

    model = PrefectYamlModel.model_validate(project)
    assert [d.name for d in model.deployments] == ["ingest-hourly", "retrain-nightly"]
    assert model.build is None and model.push is None  # a process pool: no image to build, nothing to upload
    assert all(d.pull is None for d in model.deployments)  # both take the project's pull steps
    (step,) = model.pull
    name, inputs = _get_step_fully_qualified_name_and_inputs(dict(step))
    assert name == "prefect.deployments.steps.git_clone"
    arguments = {k: v for k, v in inputs.items() if k not in RESERVED_KEYWORDS}
    inspect.signature(import_object(name)).bind(**arguments)  # raises TypeError on an argument it does not take
    assert arguments["repository"] == "{{ prefect.variables.shelfcast_repository }}"


def test_every_shelfcast_job_variable_is_a_setting_and_every_setting_a_worker_needs_is_there(project):
    fields = Settings.model_fields
    named = {name.removeprefix("SHELFCAST_").lower() for name in shelfcast_env(project)}
    assert named - set(fields) == set()  # a misspelt or removed setting
    assert set(NOT_FOR_WORKERS) <= set(fields) and not named & set(NOT_FOR_WORKERS)
    assert set(fields) - set(NOT_FOR_WORKERS) - named == set()  # a setting a worker needs but is not given
    assert set(shelfcast_env(project).values()) == {None}  # left to the worker's environment, else config.py


def test_the_default_noted_beside_each_job_variable_is_config_py_s(project):
    noted = dict(re.findall(r"^\s+(SHELFCAST_\w+): null\s+# (.*)$", PREFECT_YAML.read_text(), re.MULTILINE))
    assert set(noted) == set(shelfcast_env(project))
    for name, comment in noted.items():
        default = Settings.model_fields[name.removeprefix("SHELFCAST_").lower()].default
        if isinstance(default, (str, int, Path)):
            assert comment.startswith(str(default)), (name, default, comment)
