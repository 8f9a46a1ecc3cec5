"""Methods: every detector is a :class:`Detector` registered with a :class:`MethodSpec`."""

from anomalign.methods.base import Detector, gather_images
from anomalign.methods.registry import (
    MethodSpec,
    create_detector,
    list_methods,
    load_detector,
    method_names,
    method_spec,
    register_method,
    unregister_method,
)

__all__ = [
    "Detector",
    "MethodSpec",
    "create_detector",
    "gather_images",
    "list_methods",
    "load_detector",
    "method_names",
    "method_spec",
    "register_method",
    "unregister_method",
]
