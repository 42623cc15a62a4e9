"""Local services shelfcast starts itself: SeaweedFS S3, the Prefect server and the MLflow server."""
