"""Helpers of the service tests: encoded images and the app in FastAPI's test client."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from anomalign.service import ServedDetector, ServiceConfig, create_app


def png_bytes(array: np.ndarray | None = None, size: int = 48, fmt: str = "PNG") -> bytes:
    """An encoded image (random texture unless ``array`` is given)."""
    if array is None:
        array = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@contextmanager
def running(
    detectors: list[ServedDetector], config: ServiceConfig | None = None, **client_options
) -> Iterator[TestClient]:
    """The app in a test client, started (lifespan) and warmed up."""
    app = create_app(detectors, config or ServiceConfig(max_wait_ms=2.0))
    with TestClient(app, **client_options) as client:
        until = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < until, client.get("/readyz").json()
            time.sleep(0.01)
        yield client
