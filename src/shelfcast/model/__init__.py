"""Forecasting models: the LSTM family, accuracy metrics and zero-parameter baselines."""
