"""What the trainer and the store device agree on: errors, object stores, input features, the LiteRT runtime,
the manifest and its verification. Imports only numpy, boto3, LiteRT and the standard library (an
architecture contract in pyproject.toml holds it), so both installs can carry it."""
