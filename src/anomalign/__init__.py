"""anomalign: zero- and few-shot visual anomaly detection with vision-language models.

Data flows image -> tokens (``backbones``) -> text similarity / patch memory
(``prompts``, ``components``, ``methods``) -> :class:`Prediction` -> ``metrics``, reports
(``evaluation``), predict runs (``inspection``) and the other surfaces.

One way in::

    import anomalign
    detector = anomalign.create_detector("anoclip", backbone="ViT-B-16-plus-240:laion400m_e32")
    prediction = detector.fit(category="bottle").predict(["part.png"])
    detector.save("bottle.anomalign"); anomalign.load_detector("bottle.anomalign")

Everything below is imported lazily: ``import anomalign`` does not load torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anomalign")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

#: Public name -> "module:attribute", imported on first use.
_LAZY = {
    "create_detector": "anomalign.methods.registry:create_detector",
    "load_detector": "anomalign.methods.registry:load_detector",
    "list_methods": "anomalign.methods.registry:list_methods",
    "register_method": "anomalign.methods.registry:register_method",
    "Detector": "anomalign.methods.base:Detector",
    "Prediction": "anomalign.results:Prediction",
    "AnoCLIP": "anomalign.methods.anoclip:AnoCLIP",
    "FineGrainedAD": "anomalign.methods.finegrainedad:FineGrainedAD",
    "DEFAULT_BACKBONE": "anomalign.backbones.spec:DEFAULT_BACKBONE",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """Lazy exports (PEP 562)."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'anomalign' has no attribute {name!r}")
    import importlib

    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
