"""The errors a request can meet, each with its HTTP status and a short machine-readable code.

Every error response of the service has the body ``{"error": CODE, "detail": TEXT}``;
nothing else (no traceback) ever reaches a client.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be served: ``status`` and ``code`` go into the JSON reply."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def error_body(code: str, detail: str) -> dict[str, str]:
    """The JSON body of every error reply."""
    return {"error": code, "detail": detail}


#: HTTP status -> code for errors raised by the framework itself (routing, validation).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}
