"""anomalign: zero- and few-shot visual anomaly detection with vision-language models.

Data flows image -> tokens (``backbones``) -> text similarity / patch memory
(``prompts``, ``methods``) -> anomaly map -> ``metrics`` -> report (``evaluation``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anomalign")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_detector"]


def __getattr__(name: str):
    """Lazy exports: ``anomalign.load_detector`` imports torch only when first used."""
    if name == "load_detector":
        from anomalign.inspection import load_detector

        return load_detector
    raise AttributeError(f"module 'anomalign' has no attribute {name!r}")
