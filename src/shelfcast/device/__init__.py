"""The edge side: choosing, publishing and delivering models to store devices, and running them there.

Trainer side (may import anything): `selection` (pure choice with a reason for every rejection), `publish`
(immutable versions, channel moves, forced promotions), `channels` (the pointer and its append-only log),
`promotion` (the nightly sequence), `rollback`, `registry` (MLflow aliases, kept consistent with the pointers),
`access` (who may touch which prefix, for SeaweedFS and IAM), `cli` (`shelfcast promote|rollback|channels`).

Store side (numpy, boto3 and ai-edge-litert only; a test refuses every other package): `client` (sync with
verification and atomic swap), `forecast` (tomorrow from raw sales), `verify`, `manifest`, `runtime`,
`store_cli` (`shelfcast store sync|predict|status`).
"""

# Importable on the trainer only: the store side must never load these (its install does not have them).
TRAINER_ONLY_PACKAGES = ("tensorflow", "tf_keras", "keras", "prefect", "mlflow", "pandas", "pyarrow", "scipy",
                         "typer", "rich", "pydantic", "pydantic_settings", "matplotlib", "dask", "distributed")
