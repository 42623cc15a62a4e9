"""The in-store app (`pip install shelfcast[store]`): `sync` pulls, verifies and atomically swaps the model,
`forecast` forecasts tomorrow from raw recent sales, `cli` is `shelfcast store sync|predict|status`.

It imports only `shelfcast.contract` and numpy, boto3 and ai-edge-litert: an architecture contract in
pyproject.toml forbids everything else, and a test runs sync and predict with the trainer's packages blocked.
"""

# Importable on the trainer only: the store side must never load these (its install does not have them).
TRAINER_ONLY_PACKAGES = ("tensorflow", "tf_keras", "keras", "prefect", "mlflow", "pandas", "pyarrow", "scipy",
                         "typer", "rich", "pydantic", "pydantic_settings", "matplotlib", "dask", "distributed",
                         "lightgbm")
