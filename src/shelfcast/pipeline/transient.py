"""Which failures are worth a retry: I/O that may succeed a moment later (S3, MLflow, the network).

Retries are for I/O only (never for training or for data errors); the flows' tasks pass `retry_on_io` as
their Prefect `retry_condition_fn`. An S3 error reaching a task has already been tried `S3_MAX_ATTEMPTS` times
by botocore (the one S3 retry layer, `shelfcast.contract.objects`), so tasks retry only the other I/O (MLflow,
the network below delta-rs); `is_transient` still says whether an S3 error was transient, for messages.
"""

from __future__ import annotations

TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "500", "502", "503", "504"}


def is_transient(exc: BaseException) -> bool:
    """True for connection failures, timeouts and 5xx answers of S3 or MLflow."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return True
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in TRANSIENT_S3_CODES
    if isinstance(exc, (ConnectionError, TimeoutError, BotoCoreError)):
        return True
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # requests comes with mlflow; only a store-side install lacks it
        pass
    try:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            text = str(exc)
            return "Max retries exceeded" in text or "Connection refused" in text or exc.get_http_status_code() >= 500
    except ImportError:  # the store side has no MLflow
        pass
    return False


def retried_by_s3_client(exc: BaseException) -> bool:
    """True for what botocore raises: its retry layer has already spent every attempt on it."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen = exc
    while seen is not None:
        if isinstance(seen, (BotoCoreError, ClientError)):
            return True
        seen = seen.__cause__
    return False


def retry_on_io(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when it failed on transient I/O that no layer below
    has retried already (S3 calls are retried inside the client)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classify whatever the task raised
        return is_transient(exc) and not retried_by_s3_client(exc)
    return False
