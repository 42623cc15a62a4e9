"""`Tracker`: the thin adapter over MLflow that the nightly retrain logs through.

One parent run per night, one nested run per variant (parameters, seed, every metric, the five size figures,
training time, the `.tflite` file and the Keras model), and one version of the registered model per variant,
tagged with its technique and sizes. The version is an MLflow pyfunc model around the `.tflite`
(`shelfcast.model.pyfunc`: signature and input example, so the version page shows its schema), and the night
and variant runs record the sales they trained on as an MLflow dataset input (days, series, table version). A version becomes a *candidate* (tag `candidate=true`) only in
`mark_candidates`, after every variant of the night is logged and registered, so a night that dies half way
leaves versions nobody will promote.

Everything goes through an explicit `MlflowClient` (no global run state), so a `Tracker` can be passed to tasks
in threads. MLflow's HTTP retries are bounded (`http_retries`), so a dead server fails the night in seconds
rather than minutes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Mapping

from shelfcast import __version__
from shelfcast.contract import clock
from shelfcast.contract.errors import ServiceError

EXPERIMENT = "shelfcast-nightly"
CANDIDATE_TAG = "candidate"
SIZE_FIELDS = ("params", "nonzero_params", "article_bytes", "tflite_bytes", "gzip_bytes")



def mlflow_client(tracking_uri: str, http_retries: int = 2, http_timeout_s: int = 20):
    """The one way shelfcast opens MLflow: an `MlflowClient` whose HTTP retries are bounded, so a dead server
    fails a step in seconds, not minutes (MLflow's defaults, 7 retries and 120 s, hide it)."""
    # MLflow reads these per request from the environment.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(http_timeout_s))
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm bars on every model logged
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def finite_number(value) -> float | None:
    """`value` as a finite float, or None (missing, not a number, NaN, infinite, or a bool)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Candidate:
    """A registered variant the alert rules, the gate and promotion consider: one type from the night that
    registers it to the channel move. `name` is the registered model, `version` its version (also the S3
    version), `variant` the compression variant. `mark_candidates` and `candidates()` fill what MLflow knows;
    `shelfcast.delivery.promotion.measure_candidate` adds what the real `.tflite` shows (bytes, latency, ops)."""

    name: str
    version: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    variant: str = ""
    technique: str = ""
    night: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    tflite_uri: str = ""
    input_spec: Mapping = field(default_factory=dict)  # how a store turns raw sales into this model's inputs
    tflite_bytes: int | None = None
    latency_us: float | None = None
    builtin_ops_only: bool | None = None
    status: str = "ok"
    reason: str = ""
    tflite_path: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.variant or self.name} v{self.version}"

    @property
    def measured(self) -> bool:
        """Its `.tflite` was fetched and measured (or found unusable): promotion can judge it as it is."""
        return self.tflite_bytes is not None or self.status != "ok"

    def metric(self, name: str) -> float | None:
        return finite_number((self.metrics or {}).get(name))

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version, "variant": self.variant, "technique": self.technique,
                "run_id": self.run_id, "tflite_bytes": self.tflite_bytes, "latency_us": self.latency_us,
                "builtin_ops_only": self.builtin_ops_only, "metrics": dict(self.metrics or {})}

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "variant": self.variant,
                "technique": self.technique, "night": self.night, "metrics": dict(self.metrics or {}),
                "tags": dict(self.tags or {}), "tflite_uri": self.tflite_uri, "input_spec": dict(self.input_spec or {})}


@dataclass(frozen=True)
class Champion:
    """The model stable stores run now. Its `metrics` are on the candidates' evaluation window when
    `same_window` (the comparison promotion wants), else from its own night. `Tracker.load_champion` fills the
    rest from MLflow: the run, its night, its `.tflite` file and input spec, the window it was trained on."""

    version: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    same_window: bool = True
    name: str = ""
    run_id: str | None = None
    night_run_id: str | None = None
    variant: str = ""
    input_spec: Mapping = field(default_factory=dict)
    tflite_path: str | None = None
    training: tuple[date, date] | None = None

    @property
    def label(self) -> str:
        return f"{self.variant or self.name} v{self.version}"


@dataclass
class LoggedVariant:
    name: str
    status: str
    run_id: str
    version: str | None
    metrics: dict[str, float]
    reason: str = ""


def code_version() -> dict:
    """shelfcast's version and, when the code runs from a git checkout, its commit (and whether it was dirty)."""
    return dict(_code_version())


@functools.lru_cache(maxsize=1)
def _code_version() -> dict:
    # Read once per process: the code running is the code imported at start, and every night run, variant run
    # and published manifest asks for it (two git processes each time otherwise).
    info = {"shelfcast": __version__}
    commit = os.environ.get("SHELFCAST_GIT_COMMIT")
    if not commit:
        root = Path(__file__).resolve().parents[2]
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=5, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            info["git_dirty"] = bool(dirty)
        except (OSError, subprocess.SubprocessError):
            commit = None
    if commit:
        info["git_commit"] = commit
    return info


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (the UI shows them on every run): the code's git commit and shelfcast's version."""
    version = code_version()
    tags = {"mlflow.source.type": "JOB", "mlflow.source.name": "shelfcast nightly retrain",
            "shelfcast_version": version["shelfcast"]}
    if "git_commit" in version:
        tags["mlflow.source.git.commit"] = version["git_commit"]
        tags["git_dirty"] = str(version.get("git_dirty", False)).lower()
    return tags


def _now_ms() -> int:
    return int(clock.now().timestamp() * 1000)


def finite_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The metrics that are finite numbers (MLflow and a manifest carry no NaN, text or flags)."""
    out = {}
    for key, value in (metrics or {}).items():
        number = finite_number(value)
        if number is not None:
            out[str(key)] = number
    return out


class Tracker:
    """Nights, variants and registry versions in one MLflow tracking server (or an SQLite URI)."""

    def __init__(self, tracking_uri: str, registered_model: str, experiment: str = EXPERIMENT,
                 http_retries: int = 2, http_timeout_s: int = 20, sales_uri: str = "sales"):
        self.tracking_uri = tracking_uri
        self.registered_model = registered_model
        self.experiment = experiment
        self.sales_uri = sales_uri  # the sales table the nights train on, the source of their dataset input
        self.client = mlflow_client(tracking_uri, http_retries, http_timeout_s)
        self._experiment_id: str | None = None

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "Tracker":
        from shelfcast.data.sales import SALES_TABLE

        kwargs.setdefault("sales_uri", f"s3://{settings.bucket}/{SALES_TABLE}")
        return cls(settings.mlflow_tracking_uri, settings.registered_model, **kwargs)

    def check(self) -> None:
        """Raise `ServiceError` with the fix when MLflow cannot be reached."""
        try:
            self.experiment_id()
        except Exception as exc:  # noqa: BLE001 - any failure here means MLflow is unusable
            raise ServiceError(
                f"MLflow at {self.tracking_uri} is not reachable ({type(exc).__name__}: {str(exc)[:200]}); "
                "start it with `shelfcast stack up` or set SHELFCAST_MLFLOW_TRACKING_URI"
            ) from exc

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = (found.experiment_id if found else
                                   self.client.create_experiment(self.experiment, self.artifact_location()))
        return self._experiment_id

    def runs_url(self) -> str:
        """The MLflow UI page listing the nightly runs (the experiment's own page opens the GenAI view)."""
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id()}/runs"

    def artifact_location(self) -> str | None:
        """With a bare SQLite URI, artifacts go beside the database (not into the current folder); a tracking
        server decides for itself (the local stack proxies them to S3)."""
        if self.tracking_uri.startswith("sqlite:///"):
            return (Path(self.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        return None

    # ---- a night --------------------------------------------------------------------------------------------
    def start_night(self, night: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        run = self.client.create_run(
            self.experiment_id(), run_name=f"night-{night}", start_time=_now_ms(),
            tags={"night": night, "kind": "night", "night_status": "running", **source_tags(), **(tags or {})},
        )
        self.log_params(run.info.run_id, params)
        self.log_training_data(run.info.run_id, params)
        return run.info.run_id

    def log_training_data(self, run_id: str, params: Mapping[str, Any]) -> None:
        """The sales the run trained on as an MLflow dataset input (context `training`): the Delta table and its
        version as the source, the first and last day, series and rows as its profile and input tags. `params`
        are the night's (`start`, `end`, `series`, `rows`, `sales_table_version`); a run without them trained
        on nothing from the sales table and records no input."""
        from mlflow.data.delta_dataset_source import DeltaDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if not {"start", "end", "series", "sales_table_version"} <= set(params):
            return
        first, last = str(params["start"])[:10], str(params["end"])[:10]
        version = int(params["sales_table_version"])
        profile = {"first_day": first, "last_day": last, "series": int(params["series"]),
                   "rows": int(params.get("rows", 0)), "sales_table_version": version}
        meta = MetaDataset(DeltaDatasetSource(path=self.sales_uri, delta_table_version=version),
                           name=f"sales {first}..{last}")
        entity = meta._to_mlflow_entity()
        dataset = Dataset(entity.name, entity.digest, entity.source_type, entity.source, entity.schema,
                          json.dumps(profile))
        tags = [InputTag("mlflow.data.context", "training"), *(InputTag(k, str(v)) for k, v in profile.items())]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        items = [Metric(k, v, now, 0) for k, v in finite_metrics(metrics).items()]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_variant(self, parent_run_id: str, night: str, result, params: dict[str, Any],
                    extra_metrics: dict[str, Any] | None = None) -> LoggedVariant:
        """A nested run for one `VariantResult`; a successful variant is registered as a model version."""
        tags = {
            "mlflow.parentRunId": parent_run_id, "night": night, "kind": "variant", "variant": result.name,
            "technique": result.technique, "status": result.status,
        }
        if result.reason:
            tags["reason"] = result.reason[:5000]
        # The run spans the variant's training, not just its logging: it starts when its parent began to train.
        started = _now_ms() - int(1000 * max(float(getattr(result, "train_seconds", 0.0) or 0.0), 0.0))
        run = self.client.create_run(self.experiment_id(), run_name=f"{result.name} · night {night}",
                                     start_time=started, tags={**tags, **source_tags()})
        run_id = run.info.run_id
        variant_params = {
            "variant": result.name, "technique": result.technique, "units": result.units,
            "sparsity": result.sparsity, "quantization": result.quantization, "seed": result.seed,
            "float_parent": result.float_parent, **params,
        }
        self.log_params(run_id, variant_params)
        self.log_training_data(run_id, params)
        metrics = {**result.metrics(), **(extra_metrics or {})}
        self.log_metrics(run_id, metrics)
        if result.status != "ok":
            self.client.set_terminated(run_id, "FAILED", end_time=_now_ms())
            return LoggedVariant(result.name, result.status, run_id, None, finite_metrics(metrics), result.reason)
        self.log_artifact(run_id, result.tflite_path, "tflite")
        if result.keras_path is not None:
            self.log_artifact(run_id, result.keras_path, "keras")
        model = self.log_model(run_id, result)
        version = self.register(run_id, model, result, night)
        self.client.set_terminated(run_id, "FINISHED", end_time=_now_ms())
        return LoggedVariant(result.name, "ok", run_id, version, finite_metrics(metrics))

    def log_model(self, run_id: str, result):
        """The variant's `.tflite` as an MLflow logged model of its run (a pyfunc with signature and input
        example, `shelfcast.model.pyfunc`); returns the `LoggedModel`. Through the client alone, like every other
        call here: no global tracking URI or active run, so variants can be logged from threads."""
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        from shelfcast.model.pyfunc import save_tflite_pyfunc

        if getattr(result, "input_example", None) is None:
            raise ValueError(f"variant {result.name} has no input example (build_variant sets one from the "
                             "holdout windows): MLflow's model needs one to show its schema")
        model = self.client.create_logged_model(
            self.experiment_id(), name="model", source_run_id=run_id, model_type="tflite",
            tags={"variant": result.name, "technique": result.technique})
        self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        with tempfile.TemporaryDirectory(prefix="shelfcast-pyfunc-") as tmp:
            folder = save_tflite_pyfunc(
                Path(tmp) / "model", Path(result.tflite_path), result.input_example,
                Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                      model_id=model.model_id))
            self.client.log_model_artifacts(model.model_id, str(folder))
        return self.client.finalize_logged_model(model.model_id, "READY")

    def register(self, run_id: str, model, result, night: str) -> str:
        """A version of the registered model for this variant (its logged pyfunc model), tagged with technique
        and sizes (not a candidate)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.registered_model)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.registered_model, description="Next-day demand forecasters for store devices (.tflite)")
            except MlflowException:
                pass  # created meanwhile by a concurrent task
        tags = {
            "variant": result.name, "technique": result.technique, "quantization": result.quantization,
            "units": str(result.units), "sparsity": str(result.sparsity), "night": night,
            "tflite_file": f"tflite/{Path(result.tflite_path).name}",
            **{name: str(getattr(result, name)) for name in SIZE_FIELDS},
            "mape_pct": f"{result.mape_pct:.4f}",
        }
        with self._registry_store_scope():
            version = self.client.create_model_version(
                self.registered_model, source=f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id,
                tags=tags, description=f"{result.name} ({result.technique}) from night {night}",
            )
        return str(version.version)

    def _registry_store_scope(self):
        """A tracking server resolves a `models:/<id>` source itself; a database URI used in-process (SQLite)
        resolves it through MLflow's process-wide tracking URI (an MLflow limitation), so point that at ours
        for the call."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return contextlib.nullcontext()
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        return _use_tracking_uri(self.tracking_uri)

    def mark_candidates(self, logged: list[LoggedVariant], night: str) -> list[Candidate]:
        """Tag the night's registered versions as candidates: the last step, after everything is logged."""
        versions = {item.version for item in logged if item.version is not None}
        for version in sorted(versions, key=int):
            self.client.set_model_version_tag(self.registered_model, version, CANDIDATE_TAG, "true")
        return [c for c in self.candidates(night) if c.version in versions]

    def finish_night(self, parent_run_id: str, status: str = "complete") -> None:
        self.client.set_tag(parent_run_id, "night_status", status)
        self.client.set_terminated(parent_run_id, "FINISHED" if status == "complete" else "FAILED")

    def fail_night(self, parent_run_id: str, reason: str) -> bool:
        """Best effort: record the failure when MLflow still answers (it may be the thing that failed); returns
        whether it was recorded."""
        try:
            self.client.set_tag(parent_run_id, "night_error", reason[:5000])
            self.finish_night(parent_run_id, "failed")
        except Exception:  # noqa: BLE001 - the caller re-raises the original error
            return False
        return True

    def mark_crashed(self, parent_run_id: str, reason: str) -> bool:
        """A night whose process died without a word: its parent run, still RUNNING, becomes FAILED with
        `night_status=crashed` and the reason, and any variant run it left RUNNING becomes KILLED. A night that
        ended (however) is left as it is; returns whether anything was marked."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(parent_run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # its store was reset: nothing left to mark
                return False
            raise
        if run.info.status != "RUNNING":
            return False
        for child in self.night_runs(parent_run_id):
            if child.info.status == "RUNNING":
                self.client.set_terminated(child.info.run_id, "KILLED", end_time=_now_ms())
        self.client.set_tag(parent_run_id, "night_error", reason[:5000])
        self.finish_night(parent_run_id, "crashed")
        return True

    # ---- queries --------------------------------------------------------------------------------------------
    def candidates(self, night: str | None = None) -> list[Candidate]:
        """Versions tagged as candidates (of one night when given), newest first."""
        query = f"name='{self.registered_model}' and tags.{CANDIDATE_TAG}='true'"
        if night:
            query += f" and tags.night='{night}'"
        versions = self.client.search_model_versions(query)
        out = []
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
            run = self.client.get_run(v.run_id)
            tags = dict(v.tags)
            out.append(Candidate(
                name=self.registered_model, version=str(v.version), run_id=v.run_id, variant=tags.get("variant", ""),
                technique=tags.get("technique", ""), night=tags.get("night", ""),
                metrics={**run.data.metrics, "variant": tags.get("variant", "")}, tags=tags,
                tflite_uri=f"{run.info.artifact_uri}/{tags.get('tflite_file', 'tflite/model.tflite')}",
                input_spec=json.loads(run.data.params.get("input_spec", "{}")),
            ))
        return out

    def versions(self) -> list:
        return self.client.search_model_versions(f"name='{self.registered_model}'")

    def champion(self):
        """The model version behind the `champion` alias, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.registered_model, "champion")
        except MlflowException:
            return None

    def load_champion(self, workdir: str | Path) -> Champion | None:
        """The `champion` alias's model version with its run, night, input spec, training window and `.tflite`
        (downloaded into `workdir`; `tflite_path` None when the run has none); None before the first promotion.
        MLflow failures raise: a caller must not read a dead server as "no champion"."""
        self.check()  # the alias lookup alone reads an unreachable server as "no alias"
        version = self.champion()
        if version is None:
            return None
        run = self.client.get_run(version.run_id)
        params, tags = run.data.params, dict(version.tags or {})
        try:
            folder = self.download(version.run_id, "tflite", Path(workdir) / f"champion-{version.version}")
            files = sorted(folder.glob("*.tflite"))
        except Exception as exc:  # noqa: BLE001 - only "no such artifact" is an answer; anything else raises
            if not (isinstance(exc, FileNotFoundError) or getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"):
                raise
            files = []
        training = None
        if "start" in params and "end" in params:
            training = (date.fromisoformat(params["start"][:10]), date.fromisoformat(params["end"][:10]))
        return Champion(str(version.version), dict(run.data.metrics), same_window=False, name=version.name,
                        run_id=version.run_id, night_run_id=run.data.tags.get("mlflow.parentRunId"),
                        variant=tags.get("variant", ""), input_spec=json.loads(params.get("input_spec", "{}")),
                        tflite_path=str(files[0]) if files else None, training=training)

    def night_runs(self, parent_run_id: str) -> list:
        return self.client.search_runs(
            [self.experiment_id()], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=500)

    def latest_complete_night(self):
        runs = self.client.search_runs(
            [self.experiment_id()], filter_string="tags.kind = 'night' and tags.night_status = 'complete'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def download(self, run_id: str, artifact_path: str, dst: str | Path | None = None) -> Path:
        dst = Path(dst or tempfile.mkdtemp(prefix="shelfcast-artifact-"))
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))

    def night_summary(self, parent_run_id: str) -> dict:
        run = self.client.get_run(parent_run_id)
        return {"run_id": parent_run_id, "tags": dict(run.data.tags), "metrics": dict(run.data.metrics),
                "params": json.loads(json.dumps(dict(run.data.params)))}
