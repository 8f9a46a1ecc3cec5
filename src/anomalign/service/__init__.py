"""A detection service and its web page: ``anomalign serve``.

* :func:`create_app` builds the FastAPI app over loaded detectors (:func:`load_served`);
  :func:`serve` runs it with uvicorn, :class:`ServerThread` in a background thread.
* Concurrent requests to one detector share forward passes (:mod:`.batching`); every
  limit and error is a JSON ``{error, detail}`` reply (:mod:`.errors`); each verdict has a
  calibrated confidence (:meth:`anomalign.calibration.Calibration.confidence`).
* Only :mod:`.adapter` touches the detector API.

Needs the ``serve`` extra: ``pip install anomalign[serve]``.
"""

from anomalign.service.adapter import ServedDetector, load_served
from anomalign.service.app import create_app
from anomalign.service.config import ServiceConfig, is_loopback
from anomalign.service.runner import ServerThread, check_bind, serve

__all__ = [
    "ServedDetector",
    "ServerThread",
    "ServiceConfig",
    "check_bind",
    "create_app",
    "is_loopback",
    "load_served",
    "serve",
]
