"""The nightly pipeline as plain functions (no Prefect: `flows/` wraps them).

`config` holds `RetrainConfig` (the variant list, the window, the task runner) and `nightly` the steps of one
retrain that the retrain flow's tasks call.
"""
