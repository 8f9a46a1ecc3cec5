"""Running the app with uvicorn: in the foreground (``anomalign serve``) or in a thread.

Shutdown is graceful: on SIGINT/SIGTERM the service starts draining at once (new requests
get 503, ``/readyz`` turns 503), uvicorn stops accepting connections and lets in-flight
requests finish (up to the deadline), then the batchers finish what is queued and stop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from types import FrameType, TracebackType

import uvicorn
from fastapi import FastAPI

from anomalign.errors import ConfigError
from anomalign.service.adapter import ServedDetector
from anomalign.service.app import Service, create_app
from anomalign.service.config import ServiceConfig, is_loopback


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse a non-loopback bind without an API key (anyone on the network could post)."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"Binding to {host} exposes the service beyond this machine: give an API key "
            "with --api-key-env NAME (the variable holding it), or bind to 127.0.0.1."
        )


class DrainingServer(uvicorn.Server):
    """A uvicorn server that puts the service into draining mode on the first exit signal."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.begin_drain()
        super().handle_exit(sig, frame)


def _uvicorn_config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    service: Service = app.state.service
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(service.config.deadline_s) + 5,
        server_header=False,
    )


def serve(
    detectors: Iterable[ServedDetector],
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Serve ``detectors`` until interrupted (blocking)."""
    check_bind(host, config.api_key)
    app = create_app(detectors, config)
    DrainingServer(_uvicorn_config(app, host, port, log_level), app.state.service).run()


class ServerThread:
    """The app served on ``127.0.0.1`` in a background thread (tests, benchmarks).

    ``with ServerThread(app) as server:`` starts it on a free port, waits until it answers
    and is ready, and ``server.url`` is its address; leaving the block drains and stops it.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", ready_timeout: float = 120.0):
        self.app = app
        self.service: Service = app.state.service
        self.host = host
        self.ready_timeout = ready_timeout
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = int(self._socket.getsockname()[1])
        self.server = DrainingServer(_uvicorn_config(app, host, self.port, "warning"), self.service)
        self._thread = threading.Thread(target=self._run, name="anomalign-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.server.run(sockets=[self._socket])

    def start(self) -> ServerThread:
        """Start serving; return once ``/readyz`` would say ready."""
        self._thread.start()
        until = time.monotonic() + self.ready_timeout
        while not (self.server.started and self.service.ready):
            if self.service.warmup_error:
                self.stop()
                raise RuntimeError(self.service.warmup_error)
            if not self._thread.is_alive() or time.monotonic() > until:
                self.stop()
                raise RuntimeError("the service did not become ready")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Drain and stop (as on SIGTERM), and wait for the thread."""
        self.service.begin_drain()
        self.server.should_exit = True
        self._thread.join(timeout=self.service.config.deadline_s + 10)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["DrainingServer", "ServerThread", "check_bind", "create_app", "serve"]
