"""Anomaly detection methods: one sub-package per method, pure torch math plus a thin wrapper."""

from anomalign.methods.registry import create_method, list_methods, register_method

__all__ = ["create_method", "list_methods", "register_method"]
