"""Micro-batching: concurrent requests to one detector share one forward pass.

Each image of a request becomes an item in the detector's queue. A worker task takes the
first waiting item, gathers more until ``max_batch`` images or ``max_wait_ms`` have passed
(items already queued are taken at once), and runs one forward pass in the detector's own
thread, so the event loop keeps accepting requests meanwhile. It waits only for images
already on their way: requests announce themselves (:meth:`MicroBatcher.arriving`) before
their upload is read and decoded, and with none announced a batch starts at once, so a
lone request never pays ``max_wait_ms``. While a pass runs, new items
pile up and form the next batch: under load, batches fill up and throughput grows with
concurrency instead of serialising on the model.

The queue is bounded by ``queue_size`` images: a request that does not fit is refused at
once (503 with ``Retry-After``) instead of waiting behind work it cannot overtake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomalign.service.adapter import BatchPrediction, ServedDetector
from anomalign.service.errors import ServiceError

log = logging.getLogger("anomalign.service")

#: What a submitted image resolves to: the batch's prediction and the image's index in it.
Outcome = tuple[BatchPrediction, int]


@dataclass
class _Item:
    rgb: np.ndarray
    future: asyncio.Future[Outcome] = field(repr=False)


class MicroBatcher:
    """The bounded queue and the worker of one detector.

    Args:
        detector: the detector whose forward passes this batcher runs.
        max_batch: most images per forward pass.
        max_wait_ms: how long to wait for more images once one is queued.
        queue_size: most images waiting (not counting the pass in progress).
        retry_after_s: the ``Retry-After`` of queue-full replies.
        on_batch: called with ``(size, seconds)`` after each forward pass.
    """

    def __init__(
        self,
        detector: ServedDetector,
        *,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        retry_after_s: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.detector = detector
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        self.on_batch = on_batch
        self.executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pending = 0
        self._arriving = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Images queued and not yet taken into a batch."""
        return self._pending

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a request whose images will be submitted within this block, so the
        batch being gathered waits for them (up to ``max_wait_ms``)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def start(self) -> None:
        """Start the worker in the running event loop (again after :meth:`stop`)."""
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"anomalign-{self.detector.name}")
        self._queue = asyncio.Queue()
        self._closed = False
        self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.detector.name}")

    def submit(self, rgbs: list[np.ndarray]) -> list[asyncio.Future[Outcome]]:
        """Queue the images of one request; one future per image.

        Raises:
            ServiceError: 503 when the queue cannot take all of them, or when stopping.
        """
        if self._queue is None or self._closed:
            raise ServiceError(
                503,
                "shutting_down",
                "The service is shutting down.",
                {"Retry-After": str(self.retry_after_s)},
            )
        if self._pending + len(rgbs) > self.queue_size:
            raise ServiceError(
                503,
                "queue_full",
                f"Detector '{self.detector.name}' has {self._pending} images waiting (limit "
                f"{self.queue_size}); retry shortly.",
                {"Retry-After": str(self.retry_after_s)},
            )
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Outcome]] = []
        for rgb in rgbs:
            future: asyncio.Future[Outcome] = loop.create_future()
            self._queue.put_nowait(_Item(rgb, future))
            futures.append(future)
        self._pending += len(rgbs)
        return futures

    async def stop(self) -> None:
        """Refuse new work, finish everything queued, then end the worker and its thread."""
        self._closed = True
        if self._queue is not None and self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
            self._worker = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    async def run_in_thread(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the detector's thread (between forward passes)."""
        assert self.executor is not None, "start() the batcher first"
        return await asyncio.get_running_loop().run_in_executor(self.executor, function)

    def _take(self, item: _Item, batch: list[_Item]) -> None:
        self._pending -= 1
        if not item.future.done():  # a request past its deadline cancelled its futures
            batch.append(item)

    async def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """The batch started by ``first`` and whether the stop sentinel was met."""
        assert self._queue is not None
        batch: list[_Item] = []
        self._take(first, batch)
        loop = asyncio.get_running_loop()
        until = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = until - loop.time()
                if remaining <= 0 or self._arriving == 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            self._take(item, batch)
        return batch, False

    async def _run(self) -> None:
        assert self._queue is not None
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch, stopping = await self._gather(first)
            if batch:
                await self._forward(batch)

    async def _forward(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        rgbs = [item.rgb for item in batch]
        assert self.executor is not None
        started = time.perf_counter()
        try:
            prediction = await loop.run_in_executor(
                self.executor, self.detector.predict_batch, rgbs
            )
        except Exception as error:
            log.exception("forward pass of detector '%s' failed", self.detector.name)
            failure = ServiceError(
                500, "prediction_failed", f"The detector failed on this batch: {error}"
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            return
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - started)
        for index, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result((prediction, index))
