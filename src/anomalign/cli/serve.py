"""``anomalign serve``: a detection service (HTTP API + web page) over detector bundles."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from anomalign.errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def parse_bundles(items: list[str]) -> list[tuple[str, Path]]:
    """``PATH`` or ``NAME=PATH`` arguments as ``(name, path)``; the name defaults to the
    file's stem. Names must be unique and URL-safe; every path must be a file."""
    parsed: list[tuple[str, Path]] = []
    for item in items:
        if "=" in item and not Path(item).is_file():
            name, _, path_text = item.partition("=")
            path = Path(path_text)
        else:
            path = Path(item)
            name = path.stem
        if not NAME_PATTERN.match(name):
            raise ConfigError(
                f"'{name}' cannot name a detector (letters, digits, '_', '.', '+', '-'; at "
                f"most 64); give one with NAME=PATH for {path}."
            )
        if not path.is_file():
            raise ConfigError(f"Detector bundle '{path}' does not exist or is not a file.")
        if any(name == other for other, _ in parsed):
            raise ConfigError(f"Two bundles are named '{name}'; name them with NAME=PATH.")
        parsed.append((name, path))
    return parsed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve detector bundles over HTTP, with a web page for checking parts",
        description="Serve one or more bundles written by `anomalign fit`: POST images to "
        "/v1/detectors/NAME/predict (multipart field 'file', or JSON with base64 images), "
        "open the web page at /, the API description at /docs, metrics at /metrics. "
        "Concurrent requests share forward passes (micro-batching). Binding to anything "
        "but loopback needs an API key (--api-key-env).",
    )
    parser.add_argument(
        "bundles", nargs="+", metavar="BUNDLE", help="bundle file, or NAME=PATH to name it"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the API key clients send as X-API-Key",
    )
    parser.add_argument("--max-batch", type=int, default=16, help="images per forward pass")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a forward pass waits for more images once one is queued",
    )
    parser.add_argument(
        "--queue-size", type=int, default=64, help="images waiting per detector (then 503)"
    )
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="request body limit")
    parser.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="largest image (width * height)"
    )
    parser.add_argument("--max-images", type=int, default=16, help="images per request")
    parser.add_argument(
        "--deadline-s", type=float, default=30.0, help="per-request deadline (then 504)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomalign.cli import CommandError

    try:
        from anomalign.service import ServiceConfig, check_bind, load_served, serve
        from anomalign.service.config import MB
    except ImportError as error:
        raise CommandError(
            f"anomalign serve needs the 'serve' extra ({error.name} is missing): "
            "pip install 'anomalign[serve]'."
        ) from error

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be in 0..65535, got {args.port}.")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise CommandError(
                f"--api-key-env {args.api_key_env}: that environment variable is unset or empty."
            )
    check_bind(args.host, api_key)
    config = ServiceConfig(
        max_body_bytes=int(args.max_upload_mb * MB),
        max_pixels=args.max_pixels,
        max_images=args.max_images,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        queue_size=args.queue_size,
        deadline_s=args.deadline_s,
        api_key=api_key,
    )
    bundles = parse_bundles(args.bundles)
    detectors = [load_served(name, path, device=args.device) for name, path in bundles]
    for detector in detectors:
        note = "  UNTRAINED BACKBONE (random weights)" if detector.untrained_backbone else ""
        print(f"detector '{detector.name}': {detector.source}{note}")
    print(f"serving on http://{args.host}:{args.port}/ (API description at /docs)")
    serve(detectors, config, host=args.host, port=args.port, log_level=args.log_level)
    return 0
