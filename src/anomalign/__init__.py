"""anomalign: zero- and few-shot visual anomaly detection with vision-language models.

Data flows image -> tokens (``backbones``) -> text similarity / patch memory
(``prompts``, ``methods``) -> anomaly map -> ``metrics`` -> report (``evaluation``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anomalign")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
