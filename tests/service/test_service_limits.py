"""Every limit and error of the service: sizes, pixels, counts, deadline, queue, API key,
draining, failures; all as JSON ``{error, detail}`` with the right status."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from service_helpers import png_bytes, running

from anomalign.errors import ConfigError
from anomalign.service import ServedDetector, ServiceConfig, check_bind, is_loopback


def _post(client, images: list[bytes], path: str = "/v1/detectors/synth/predict", **kw):
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    return client.post(path, files=files, **kw)


def _error(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    assert "Traceback" not in body["detail"]
    return body


class Gate:
    """Makes a detector's forward passes wait, after :meth:`hold`, until released (and says
    when one waits); open at first, so warm-up passes."""

    def __init__(self, served: ServedDetector) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        forward = served.predict_batch

        def gated(rgbs):
            self.entered.set()
            assert self.release.wait(30), "gate never released"
            return forward(rgbs)

        served.predict_batch = gated  # type: ignore[method-assign]

    def hold(self) -> None:
        self.entered.clear()
        self.release.clear()


def _in_thread(function) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("reply", function()))
    thread.start()
    return thread, box


def _bomb_png(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims ``width`` x ``height`` pixels."""
    data = png_bytes(size=8)
    ihdr = bytearray(data[12:29])  # after the signature and length: b"IHDR" + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return data[:12] + bytes(ihdr) + crc + data[33:]


def test_upload_size_limit(served: ServedDetector) -> None:
    image = png_bytes(size=48)
    config = ServiceConfig(max_body_bytes=len(image) * 2)
    with running([served], config) as client:
        assert _post(client, [image]).status_code == 200
        body = _error(_post(client, [image, image, image]), 413, "payload_too_large")
        assert str(len(image) * 2) in body["detail"]

        def chunks():  # no Content-Length: the limit applies to the bytes received
            yield b'{"images": [{"data": "'
            for _ in range(20):
                yield b"A" * len(image)
            yield b'"}]}'

        streamed = client.post(
            "/v1/detectors/synth/predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        _error(streamed, 413, "payload_too_large")


def test_pixel_limit_and_decompression_bomb(served: ServedDetector) -> None:
    with running([served], ServiceConfig(max_pixels=48 * 48)) as client:
        assert _post(client, [png_bytes(size=48)]).status_code == 200
        body = _error(_post(client, [png_bytes(size=49)]), 413, "image_too_large")
        assert "49x49" in body["detail"]
    bomb = _bomb_png(60_000, 60_000)
    assert len(bomb) < 1000
    with running([served]) as client:  # default limit: refused on the header, never decoded
        started = time.perf_counter()
        _error(_post(client, [bomb]), 413, "image_too_large")
        assert time.perf_counter() - started < 5


def test_images_per_request_limit(served: ServedDetector) -> None:
    image = png_bytes(size=32)
    with running([served], ServiceConfig(max_images=2)) as client:
        assert len(_post(client, [image, image]).json()["results"]) == 2
        body = _error(_post(client, [image] * 3), 413, "too_many_images")
        assert "3 images" in body["detail"] and "limit is 2" in body["detail"]


def test_deadline_gives_504_and_the_service_goes_on(served: ServedDetector) -> None:
    gate = Gate(served)
    with running([served], ServiceConfig(deadline_s=0.3), raise_server_exceptions=False) as c:
        gate.hold()
        started = time.perf_counter()
        body = _error(_post(c, [png_bytes(size=32)]), 504, "deadline_exceeded")
        assert time.perf_counter() - started < 5
        assert "0.3 s" in body["detail"]
        gate.release.set()
        assert _post(c, [png_bytes(size=32)]).status_code == 200


def test_queue_full_gives_503_with_retry_after(served: ServedDetector) -> None:
    gate = Gate(served)
    config = ServiceConfig(max_batch=1, queue_size=2, max_images=2, retry_after_s=3)
    with running([served], config) as client:
        gate.hold()
        image = png_bytes(size=32)
        thread, box = _in_thread(lambda: _post(client, [image, image]))
        assert gate.entered.wait(10)  # image 1 in the forward pass, image 2 queued
        refused = _post(client, [image, image])
        _error(refused, 503, "queue_full")
        assert refused.headers["retry-after"] == "3"
        gate.release.set()
        thread.join(30)
        assert box["reply"].status_code == 200
        assert _post(client, [image, image]).status_code == 200


def test_api_key(served: ServedDetector) -> None:
    image = png_bytes(size=32)
    with running([served], ServiceConfig(api_key="s3cret-key")) as client:
        _error(client.get("/v1/detectors"), 401, "unauthorized")
        _error(client.get("/v1/detectors", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        _error(_post(client, [image]), 401, "unauthorized")
        _error(client.get("/metrics"), 401, "unauthorized")
        good = {"X-API-Key": "s3cret-key"}
        assert client.get("/v1/detectors", headers=good).status_code == 200
        assert _post(client, [image], headers=good).status_code == 200
        assert client.get("/metrics", headers=good).status_code == 200
        # probes and the page stay open (the page asks for the key)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/").status_code == 200
    # an unknown detector still needs the key first: names are not disclosed
    with running([served], ServiceConfig(api_key="k")) as client:
        _error(client.get("/v1/detectors/nope"), 401, "unauthorized")


def test_binding_beyond_loopback_needs_a_key() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="API key"):
            check_bind(host, None)
        check_bind(host, "a-key")
    with pytest.raises(ConfigError, match="empty API key"):
        ServiceConfig(api_key="")
    with pytest.raises(ConfigError, match="queue_size"):
        ServiceConfig(max_images=32, queue_size=16)
    with pytest.raises(ConfigError, match="max_batch"):
        ServiceConfig(max_batch=0)


def test_failures_are_json_never_tracebacks(served: ServedDetector) -> None:
    def explode(rgbs):
        raise RuntimeError("CUDA out of memory (simulated)")

    served.predict_batch = explode  # type: ignore[method-assign]
    config = ServiceConfig(warmup=False)
    with running([served], config, raise_server_exceptions=False) as client:
        body = _error(_post(client, [png_bytes(size=32)]), 500, "prediction_failed")
        assert "simulated" in body["detail"]
        assert client.get("/healthz").status_code == 200


def test_unexpected_errors_are_json(served: ServedDetector, monkeypatch) -> None:
    def broken_describe():
        raise KeyError("boom")

    monkeypatch.setattr(served, "describe", broken_describe)
    with running([served], raise_server_exceptions=False) as client:
        reply = client.get("/v1/detectors")
    _error(reply, 500, "internal_error")


def test_readyz_waits_for_warm_up(served: ServedDetector) -> None:
    from fastapi.testclient import TestClient

    from anomalign.service import create_app

    gate = Gate(served)
    gate.hold()
    app = create_app([served], ServiceConfig())
    with TestClient(app) as client:
        assert gate.entered.wait(10)
        _error(client.get("/readyz"), 503, "not_ready")
        assert client.get("/healthz").status_code == 200
        gate.release.set()
        until = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < until
            time.sleep(0.01)


def test_warm_up_failure_keeps_readyz_unready(served: ServedDetector) -> None:
    from fastapi.testclient import TestClient

    from anomalign.service import create_app

    def broken():
        raise RuntimeError("no such device")

    served.warm_up = broken  # type: ignore[method-assign]
    with TestClient(create_app([served])) as client:
        until = time.monotonic() + 10
        while "warm-up failed" not in client.get("/readyz").json()["detail"]:
            assert time.monotonic() < until
            time.sleep(0.01)
        _error(client.get("/readyz"), 503, "not_ready")


def test_draining_finishes_in_flight_and_refuses_new(
    served: ServedDetector, test_images: list[Path]
) -> None:
    gate = Gate(served)
    with running([served]) as client:
        gate.hold()
        thread, box = _in_thread(lambda: _post(client, [test_images[0].read_bytes()]))
        assert gate.entered.wait(10)
        client.app.state.service.begin_drain()
        refused = _post(client, [test_images[1].read_bytes()])
        _error(refused, 503, "shutting_down")
        assert "retry-after" in refused.headers
        _error(client.get("/readyz"), 503, "not_ready")
        assert client.get("/healthz").status_code == 200
        gate.release.set()
        thread.join(30)
        assert box["reply"].status_code == 200  # the in-flight request finished
