"""Throughput and latency of ``anomalign serve`` against in-process ``predict``.

For each backbone: fits a zero-shot AnoCLIP bundle on random images, measures in-process
``predict`` throughput at batch size ``--max-batch`` on decoded images, then starts
``anomalign serve`` on 127.0.0.1 (its own process, as deployed) and sends a fixed number
of one-image requests at concurrency 1, 4 and 16 with httpx. Prints images/s, p50/p99
latency and the ratio of served to in-process throughput (goal: >= 0.8 at concurrency 16).
The run is bounded: a fixed request count per level and a timeout per request.

    python benchmarks/bench_service.py [--requests 256] [--vit-requests 48] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import anomalign
from anomalign.backbones import UntrainedBackboneWarning, load_backbone
from anomalign.inspection import fit_for_inspection
from anomalign.service import load_served

BACKBONES = ("anomalign-tiny:random", "ViT-B-16-plus-240:random")
LEVELS = (1, 4, 16)
REQUEST_TIMEOUT_S = 120.0


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_process(bundle: Path, backbone, rgbs: list[np.ndarray], batch: int, repeats: int) -> float:
    """Best images/s of the loaded bundle's predict on decoded images, ``batch`` at a time."""
    served = load_served("bench", bundle, backbone=backbone)
    served.predict_batch(rgbs[:batch])  # warm-up
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(rgbs), batch):
            served.predict_batch(rgbs[start : start + batch])
        best = max(best, len(rgbs) / (time.perf_counter() - started))
    return best


async def load(url: str, images: list[bytes], requests: int, concurrency: int) -> dict:
    """Send ``requests`` one-image requests, ``concurrency`` at a time; latency stats."""
    latencies: list[float] = []
    failures: list[int] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as c:

        async def worker() -> None:
            for index in counter:
                data = images[index % len(images)]
                started = time.perf_counter()
                reply = await c.post(
                    "/v1/detectors/bench/predict", files=[("file", ("x.png", data, "image/png"))]
                )
                if reply.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures.append(reply.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.asarray(latencies or [float("nan")]) * 1000
    return {
        "throughput": len(latencies) / wall,
        "failures": failures,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def serve_process(bundle: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    entry = "import sys; from anomalign.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "serve", f"bench={bundle}", "--port", str(port)]
    command += ["--device", args.device, "--max-batch", str(args.max_batch)]
    command += ["--max-wait-ms", str(args.max_wait_ms), "--queue-size", "256"]
    command += ["--deadline-s", "600"]  # throughput is measured: no request may time out
    command += ["--log-level", "warning"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def batch_totals(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the service's own metrics."""
    values = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for key in values:
            if line.startswith(f"anomalign_batch_size_{key}{{"):
                values[key] = float(line.rsplit(" ", 1)[1])
    return values["sum"], values["count"]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(f"anomalign serve exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("anomalign serve did not become ready")


def bench(spec: str, requests: int, args: argparse.Namespace, folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        backbone = load_backbone(spec, device=args.device)
    side = int(backbone.image_size[0])
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(args.max_batch)]
    bundle = folder / f"{spec.split(':')[0]}.anomalign"
    detector = anomalign.create_detector(
        "anoclip", backbone=backbone, device=args.device, image_score="single"
    )
    fit_for_inspection(detector, rgbs[:4], category="bottle", fpr=0.25)
    detector.save(bundle)
    reference = in_process(bundle, backbone, rgbs, args.max_batch, args.repeats)
    images = [_png(rgb) for rgb in rgbs]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = serve_process(bundle, port, args)
    try:
        wait_ready(url, process)
        asyncio.run(load(url, images, min(requests, 16), 4))  # warm the connections up
        rows = []
        for concurrency in LEVELS:
            before = batch_totals(url)
            stats = asyncio.run(load(url, images, requests, concurrency))
            after = batch_totals(url)
            passes = max(after[1] - before[1], 1.0)
            rows.append((concurrency, stats, (after[0] - before[0]) / passes))
    finally:
        process.terminate()
        process.wait(timeout=60)
    # the machine's load may change during the run: the reference is the better of two
    # measurements, before and after the served ones (so the ratio errs on the low side)
    reference = max(reference, in_process(bundle, backbone, rgbs, args.max_batch, 1))
    print(f"\n== {spec} on {args.device}, {side}x{side} PNG per request, {requests} requests")
    print(f"in-process predict, batch {args.max_batch}: {reference:8.1f} images/s")
    print(
        f"{'concurrency':>11} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} {'ratio':>6}"
    )
    for concurrency, stats, mean_batch in rows:
        print(
            f"{concurrency:>11} {stats['throughput']:9.1f} {stats['p50']:8.1f} "
            f"{stats['p99']:8.1f} {mean_batch:6.1f} {stats['throughput'] / reference:6.2f}"
            + (
                f"  {len(stats['failures'])} failed: {stats['failures'][:5]}"
                if stats["failures"]
                else ""
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="per level, tiny backbone")
    parser.add_argument("--vit-requests", type=int, default=32, help="per level, ViT-B-16+")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    args = parser.parse_args()
    os.environ.setdefault("ANOMALIGN_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-service-") as folder:
        for spec in args.backbones:
            requests = args.requests if spec.startswith("anomalign-tiny") else args.vit_requests
            bench(spec, requests, args, Path(folder))


if __name__ == "__main__":
    main()
