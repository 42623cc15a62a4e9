"""Sales data: the Kaggle schema, a validating reader, the synthetic generator and model windows."""
