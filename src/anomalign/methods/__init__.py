"""Anomaly detection methods: one sub-package per method, pure torch math plus a thin wrapper."""

from anomalign.methods.base import Detector
from anomalign.methods.registry import create_method, list_methods, register_method

__all__ = ["Detector", "create_method", "list_methods", "register_method"]
