"""Every error shelfcast raises on purpose. Each says what is wrong and how to fix it.

The classes mix the project base with the builtin they refine, so callers may catch either.
"""

from __future__ import annotations


class ShelfcastError(Exception):
    """Base class of every deliberate shelfcast error."""


class ConfigError(ShelfcastError, ValueError):
    """A setting or configuration file is invalid; the message names the key."""


class SalesSchemaError(ShelfcastError, ValueError):
    """A sales file cannot be read as sales data; the message names the file, the row and the fix."""


class ConversionError(ShelfcastError, RuntimeError):
    """A model could not be converted to a deployable `.tflite` file."""


class ModelLoadError(ShelfcastError, RuntimeError):
    """A `.tflite` file does not load or does not run in the edge interpreter."""


class IntegrityError(ShelfcastError, ValueError):
    """A downloaded object does not match its manifest (checksum or size)."""


class WriteConflict(ShelfcastError, RuntimeError):
    """An object changed since it was read (a compare-and-swap lost): re-read it and retry."""


class PromotionConflict(WriteConflict):
    """Another promotion moved the channel pointer first: this one changed nothing."""


class ServiceError(ShelfcastError, RuntimeError):
    """A local service (S3, Prefect, MLflow) could not be started or reached."""
