"""Exception types shared across the package.

Every error a user can cause (bad file, bad option, missing weights) derives from
:class:`AnomalignError`; the CLI prints these without a traceback.
"""


class AnomalignError(Exception):
    """Base class for user-facing errors; the message says what was expected."""


class ConfigError(AnomalignError, ValueError):
    """An option, spec string or configuration file is invalid."""


class DataError(AnomalignError, ValueError):
    """A dataset, image, mask or table on disk is missing or malformed."""


class WeightsUnavailableError(AnomalignError, RuntimeError):
    """Pretrained weights were asked for but cannot be found locally or downloaded."""


class NonFiniteResultError(AnomalignError, ValueError):
    """A detector produced a NaN or infinite score or map value: no verdict is possible."""
