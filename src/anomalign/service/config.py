"""The service's settings: limits, batching and authentication, one frozen dataclass."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from anomalign.errors import ConfigError

MB = 1024 * 1024


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and batching of :func:`anomalign.service.create_app`.

    Attributes:
        max_body_bytes: largest request body (all images of a request together); 413 above.
        max_pixels: largest decoded image (width * height); 413 above, checked on the
            header before any pixel is decoded (decompression bombs never expand).
        max_images: most images in one request; 413 above.
        max_batch: most images in one forward pass of the micro-batcher.
        max_wait_ms: how long the batcher waits for more images after the first one.
        queue_size: images waiting per detector; a request that does not fit gets 503.
        deadline_s: a request not answered within this many seconds gets 504.
        retry_after_s: the ``Retry-After`` header of 503 replies.
        api_key: required in the ``X-API-Key`` header of ``/v1`` and ``/metrics`` when set.
        warmup: run one prediction per detector at start-up before ``/readyz`` says ready.
    """

    max_body_bytes: int = 20 * MB
    max_pixels: int = 40_000_000
    max_images: int = 16
    max_batch: int = 16
    max_wait_ms: float = 5.0
    queue_size: int = 64
    deadline_s: float = 30.0
    retry_after_s: int = 1
    api_key: str | None = None
    warmup: bool = True

    def __post_init__(self) -> None:
        positive = {
            "max_body_bytes": self.max_body_bytes,
            "max_pixels": self.max_pixels,
            "max_images": self.max_images,
            "max_batch": self.max_batch,
            "queue_size": self.queue_size,
            "deadline_s": self.deadline_s,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"The service's {name} must be positive, got {value}.")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}.")
        if self.queue_size < self.max_images:
            raise ConfigError(
                f"queue_size ({self.queue_size}) must hold at least one full request "
                f"(max_images = {self.max_images})."
            )
        if self.api_key is not None and not self.api_key:
            raise ConfigError("An empty API key would accept everyone; give a non-empty one.")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
