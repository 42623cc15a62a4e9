"""Prefect flows: the only place shelfcast imports Prefect. Each flow reads like the pipeline diagram and
calls plain functions from `shelfcast`."""
