"""Prometheus metrics of one service instance (its own registry, so apps never share)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Requests, latency, errors, batch sizes, forward-pass time, queue depth, in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "anomalign_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "anomalign_request_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "anomalign_errors",
            "Error replies by error code.",
            ["code"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "anomalign_batch_size",
            "Images per forward pass of the micro-batcher.",
            ["detector"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "anomalign_batch_seconds",
            "Duration of one forward pass.",
            ["detector"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "anomalign_images",
            "Images predicted.",
            ["detector"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "anomalign_queue_depth",
            "Images waiting for a forward pass.",
            ["detector"],
            registry=self.registry,
        )

        self.in_flight = Gauge(
            "anomalign_in_flight",
            "HTTP requests being served (this scrape excluded).",
            registry=self.registry,
        )

    def observe_batch(self, detector: str, size: int, seconds: float) -> None:
        """Record one forward pass."""
        self.batch_size.labels(detector).observe(size)
        self.batch_seconds.labels(detector).observe(seconds)
        self.images.labels(detector).inc(size)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
