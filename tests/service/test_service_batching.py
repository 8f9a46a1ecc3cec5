"""Micro-batching: concurrent requests share forward passes and get the same scores."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
from service_helpers import running

from anomalign.service import ServedDetector, ServiceConfig
from anomalign.service.batching import MicroBatcher


def _count_forward_passes(served: ServedDetector) -> list[int]:
    """Wrap the detector's own predict; the list gets one entry (batch size) per call."""
    calls: list[int] = []
    predict = served.detector.predict

    def counted(images, *args, **kwargs):
        calls.append(len(images))
        return predict(images, *args, **kwargs)

    served.detector.predict = counted
    return calls


def test_concurrent_requests_share_forward_passes(
    served: ServedDetector, test_images: list[Path]
) -> None:
    images = test_images * 2  # 12 requests of one image each
    calls = _count_forward_passes(served)
    config = ServiceConfig(max_batch=8, max_wait_ms=200.0)
    with running([served], config) as client:

        def post(index: int) -> float:
            data = images[index].read_bytes()
            reply = client.post(
                "/v1/detectors/synth/predict", files=[("file", ("x.png", data, "image/png"))]
            )
            assert reply.status_code == 200, reply.text
            return reply.json()["results"][0]["score"]

        sequential = [post(i) for i in range(len(images))]
        calls.clear()
        concurrent: dict[int, float] = {}
        start = threading.Barrier(len(images))

        def worker(index: int) -> None:
            start.wait()
            concurrent[index] = post(index)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        metrics = client.get("/metrics").text
    assert len(concurrent) == len(images)
    assert sum(calls) == len(images)
    assert len(calls) < len(images), calls  # fewer forward passes than requests
    assert max(calls) > 1 and max(calls) <= 8
    np.testing.assert_allclose(
        [concurrent[i] for i in range(len(images))], sequential, rtol=1e-5, atol=1e-7
    )
    assert 'anomalign_batch_size_bucket{detector="synth",le="1.0"}' in metrics


class _FakeDetector:
    """Records batches; answers score = the image's first pixel (the adapter's interface)."""

    name = "fake"

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[int] = []
        self.seconds = seconds

    def predict_batch(self, rgbs):
        from anomalign.service.adapter import BatchPrediction

        self.batches.append(len(rgbs))
        time.sleep(self.seconds)
        scores = [float(rgb[0, 0, 0]) for rgb in rgbs]
        return BatchPrediction(scores, [None] * len(rgbs), None)


def _image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, np.uint8)


def test_batches_respect_max_batch_and_keep_each_image_its_result() -> None:
    fake = _FakeDetector(seconds=0.01)

    async def scenario() -> list[float]:
        batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=50, queue_size=64)  # type: ignore[arg-type]
        await batcher.start()
        futures = []
        for value in range(10):
            futures += batcher.submit([_image(value)])
        outcomes = await asyncio.gather(*futures)
        await batcher.stop()
        return [prediction.scores[index] for prediction, index in outcomes]

    scores = asyncio.run(scenario())
    assert scores == [float(v) for v in range(10)]
    assert fake.batches == [4, 4, 2]


def test_a_batch_waits_only_for_announced_requests_and_at_most_max_wait() -> None:
    fake = _FakeDetector()

    async def lone(announced: bool) -> float:
        batcher = MicroBatcher(fake, max_batch=64, max_wait_ms=300, queue_size=64)  # type: ignore[arg-type]
        await batcher.start()
        started = time.perf_counter()
        if announced:
            with batcher.arriving():  # another request is reading its upload, never submits
                (future,) = batcher.submit([_image(1)])
                await future
        else:
            (future,) = batcher.submit([_image(1)])
            await future
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(lone(announced=False)) < 0.25  # nobody on the way: no wait
    assert 0.29 <= asyncio.run(lone(announced=True)) < 2.0  # waits for it, then gives up
    assert fake.batches == [1, 1]

    async def joined() -> list[int]:
        batcher = MicroBatcher(fake, max_batch=64, max_wait_ms=2000, queue_size=64)  # type: ignore[arg-type]
        await batcher.start()
        with batcher.arriving():  # request 2 is reading its upload
            first = batcher.submit([_image(1)])  # request 1 is in: its batch waits for 2
            await asyncio.sleep(0.05)
            second = batcher.submit([_image(2)])
        await asyncio.gather(*first, *second)
        await batcher.stop()
        return fake.batches[2:]

    assert asyncio.run(joined()) == [2]


def test_cancelled_images_are_skipped_and_stop_drains_the_queue() -> None:
    fake = _FakeDetector()

    async def scenario() -> list[float]:
        batcher = MicroBatcher(fake, max_batch=8, max_wait_ms=20, queue_size=64)  # type: ignore[arg-type]
        await batcher.start()
        dropped = batcher.submit([_image(7)])
        kept = batcher.submit([_image(1), _image(2)])
        dropped[0].cancel()  # its request went past its deadline
        await batcher.stop()  # finishes what is queued
        results = [f.result() for f in kept]
        assert batcher.pending == 0
        return [prediction.scores[index] for prediction, index in results]

    assert asyncio.run(scenario()) == [1.0, 2.0]
    assert fake.batches == [2]
