"""Build a caption from one normal image with a multimodal LLM.

Any OpenAI-compatible chat-completions endpoint works (hosted APIs, vLLM, Ollama):
the image goes as a PNG data URL in an ``image_url`` content part, the system prompt
is ours (``data/system_prompt.txt``), and the reply must be the caption JSON. Invalid
replies are retried with the validation error fed back to the model; the output file
is written atomically, and only once a valid caption is in hand.

Only the standard library is used for HTTP, so building needs no extra dependency.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from anomalign.errors import AnomalignError, ConfigError
from anomalign.io import write_text
from anomalign.prompts.captions.schema import (
    CaptionError,
    CategoryCaption,
    consistency_warnings,
    normalize_category,
    parse_caption,
)

#: Environment variables read for each setting, first match wins.
ENV_BASE_URL = ("ANOMALIGN_LLM_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("ANOMALIGN_LLM_MODEL",)
ENV_API_KEY = ("ANOMALIGN_LLM_API_KEY", "OPENAI_API_KEY")

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 2
DEFAULT_TRANSPORT_RETRIES = 3
MAX_TIMEOUT_S = 24 * 3600.0
MAX_RETRIES = 20
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
DEFAULT_MAX_SIDE = 1024
#: Largest answer body read from the server; a longer one is refused.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
ERROR_BODY_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
#: Extra seconds the caller waits for the request thread beyond the deadline.
DEADLINE_GRACE_S = 1.0


class CaptionBuildError(AnomalignError, RuntimeError):
    """The LLM could not be reached, refused the request, or gave no valid caption."""


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to call the chat-completions endpoint.

    Attributes:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or
            ``http://localhost:11434/v1`` (Ollama); ``/chat/completions`` is appended
            unless the URL already ends with it.
        model: model name as the server knows it.
        api_key: bearer token; ``None`` sends no ``Authorization`` header.
        timeout: deadline in seconds of one whole HTTP request (connecting, sending and
            reading the complete answer).
        retries: extra attempts after an invalid reply (0 = one attempt only).
        transport_retries: extra attempts after an HTTP 5xx answer or a failed connection.
        retry_backoff: seconds before the first such retry, doubled for each next one.
        json_mode: ask for ``response_format={"type": "json_object"}``; dropped
            automatically if the server rejects it with HTTP 400.
        temperature: sampling temperature.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    transport_retries: int = DEFAULT_TRANSPORT_RETRIES
    retry_backoff: float = DEFAULT_BACKOFF_S
    json_mode: bool = True
    temperature: float = 0.2

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        json_mode: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> LLMSettings:
        """Settings from explicit values, falling back to the environment variables."""
        env = os.environ if environ is None else environ

        def pick(value: str | None, names: Sequence[str]) -> str | None:
            if value:
                return value
            return next((env[name] for name in names if env.get(name)), None)

        url = pick(base_url, ENV_BASE_URL)
        name = pick(model, ENV_MODEL)
        missing = []
        if not url:
            missing.append(f"a base URL (--base-url or ${ENV_BASE_URL[0]})")
        if not name:
            missing.append(f"a model name (--model or ${ENV_MODEL[0]})")
        if missing:
            raise ConfigError(
                "Building a caption needs " + " and ".join(missing) + " for an OpenAI-compatible "
                "chat-completions server, e.g. --base-url http://localhost:11434/v1 for Ollama."
            )
        timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        retries = DEFAULT_RETRIES if retries is None else int(retries)
        if not 0 < timeout <= MAX_TIMEOUT_S:  # also refuses nan
            raise ConfigError(
                f"The timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout}."
            )
        if not 0 <= retries <= MAX_RETRIES:
            raise ConfigError(
                f"The number of retries must be between 0 and {MAX_RETRIES}, got {retries}."
            )
        return cls(
            base_url=url,  # type: ignore[arg-type]
            model=name,  # type: ignore[arg-type]
            api_key=pick(api_key, ENV_API_KEY),
            timeout=timeout,
            retries=retries,
            json_mode=json_mode,
        )

    @property
    def endpoint(self) -> str:
        """The full chat-completions URL."""
        url = self.base_url.rstrip("/")
        return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


@dataclass(frozen=True)
class BuildResult:
    """A validated caption and how it was obtained."""

    caption: CategoryCaption
    attempts: int
    warnings: tuple[str, ...] = ()


def system_prompt() -> str:
    """The system prompt sent to the LLM (shipped as ``data/system_prompt.txt``)."""
    entry = resources.files("anomalign.prompts.captions").joinpath("data", "system_prompt.txt")
    return entry.read_text(encoding="utf-8")


def image_data_url(image: str | Path, max_side: int = DEFAULT_MAX_SIDE) -> str:
    """Read ``image`` as RGB, shrink it to at most ``max_side`` pixels, as a PNG data URL."""
    from PIL import Image

    from anomalign.data.images import load_rgb

    picture = Image.fromarray(load_rgb(image))
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def extract_json(text: str) -> Any:
    """Decode the JSON object in a model reply, tolerating Markdown fences and chatter."""
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, flags=re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as error:
        start, end = stripped.find("{"), stripped.rfind("}")
        if 0 <= start < end:
            with suppress(json.JSONDecodeError):
                return json.loads(stripped[start : end + 1])
        raise CaptionError(
            f"the reply is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})"
        ) from None


def _user_message(category: str, data_url: str) -> dict[str, Any]:
    text = (
        f"Category: {category.replace('_', ' ')}. This image shows a normal, defect-free "
        "example. Return the caption JSON object described in the instructions."
    )
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_url}},
        ],
    }


def _error_detail(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    with suppress(ValueError, AttributeError, TypeError, RecursionError):
        error = json.loads(text).get("error")
        text = error.get("message", text) if isinstance(error, dict) else str(error or text)
    return text[:300]


def _read_bounded(response: Any, where: str, deadline: float, timeout: float) -> bytes:
    """The response body, refused beyond :data:`MAX_RESPONSE_BYTES` or past ``deadline``."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise CaptionBuildError(
            f"The LLM server at {where} announced a {int(declared)}-byte answer; at most "
            f"{MAX_RESPONSE_BYTES} bytes are read."
        )
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete answer within {timeout:g} s")
        chunk = response.read1(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CaptionBuildError(
                f"The LLM server at {where} sent more than {MAX_RESPONSE_BYTES} bytes; the "
                "answer was refused."
            )
        chunks.append(chunk)


def _post_once(settings: LLMSettings, request: urllib.request.Request, where: str) -> bytes:
    """One POST, its whole answer within ``settings.timeout`` seconds (connection, headers
    and body together: the request runs in a worker thread that is abandoned at the
    deadline), or a :class:`CaptionBuildError` saying what went wrong."""
    deadline = time.monotonic() + settings.timeout
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout) as response:
                outcome["body"] = _read_bounded(response, where, deadline, settings.timeout)
        except urllib.error.HTTPError as error:
            outcome["error"], outcome["error_body"] = error, b""
            with suppress(OSError, ValueError, http.client.HTTPException):
                outcome["error_body"] = error.read(ERROR_BODY_BYTES) or b""
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=fetch, name="anomalign-llm-request", daemon=True)
    worker.start()
    worker.join(settings.timeout + DEADLINE_GRACE_S)
    if worker.is_alive():
        raise CaptionBuildError(
            f"The LLM server at {where} did not answer within {settings.timeout:g} s "
            "(raise --timeout for slow local models)."
        )
    error = outcome.get("error")
    if error is None:
        return outcome["body"]
    if isinstance(error, CaptionBuildError):
        raise error
    if isinstance(error, urllib.error.HTTPError):
        detail = _error_detail(outcome.get("error_body", b""))
        hint = ""
        if error.code in (401, 403):
            hint = f" Check the API key (--api-key or ${ENV_API_KEY[0]})."
        elif error.code == 404:
            hint = " Check --base-url (usually ending in /v1) and --model."
        raise _HTTPStatusError(
            error.code, f"The LLM server answered HTTP {error.code} at {where}: {detail}.{hint}"
        )
    timed_out = isinstance(error, TimeoutError) or (
        isinstance(error, urllib.error.URLError) and isinstance(error.reason, TimeoutError)
    )
    if timed_out:
        raise CaptionBuildError(
            f"The LLM server at {where} did not answer within {settings.timeout:g} s "
            "(raise --timeout for slow local models)."
        )
    if isinstance(error, urllib.error.URLError):
        raise _ConnectionFailed(f"Cannot reach the LLM server at {where}: {error.reason}.")
    if isinstance(error, OSError | http.client.HTTPException):
        raise _ConnectionFailed(f"Connection to the LLM server at {where} failed: {error}.")
    raise error


def _post(settings: LLMSettings, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload``; return the decoded response or raise with a clear reason.

    HTTP 5xx answers and failed connections are retried ``settings.transport_retries``
    times, waiting ``retry_backoff * 2**n`` seconds before retry ``n``.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    request = urllib.request.Request(
        settings.endpoint,
        data=json.dumps(payload).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    where = f"{settings.endpoint} (model {settings.model!r})"
    for attempt in range(settings.transport_retries + 1):
        try:
            body = _post_once(settings, request, where)
            break
        except (_HTTPStatusError, _ConnectionFailed) as error:
            retryable = isinstance(error, _ConnectionFailed) or error.status >= 500
            if not retryable or attempt == settings.transport_retries:
                raise
            time.sleep(min(settings.retry_backoff * 2**attempt, MAX_BACKOFF_S))
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise CaptionBuildError(
            f"The LLM server at {where} did not return JSON: {body[:200]!r}"
        ) from None
    if not isinstance(decoded, dict):
        raise CaptionBuildError(
            f"The LLM server at {where} returned an unexpected {decoded!r:.200}"
        )
    return decoded


class _ConnectionFailed(CaptionBuildError):
    """The connection failed or broke (retried)."""


class _HTTPStatusError(CaptionBuildError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reply_text(response: dict[str, Any], settings: LLMSettings) -> str:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise CaptionBuildError(
            f"The LLM server at {settings.endpoint} returned no chat completion "
            f"(expected choices[0].message.content): {json.dumps(response)[:200]}"
        ) from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str) or not content.strip():
        raise CaptionError("the reply is empty")
    return content


def _complete(settings: LLMSettings, messages: list[dict[str, Any]], state: dict[str, bool]) -> str:
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "temperature": settings.temperature,
    }
    if state["json_mode"]:
        payload["response_format"] = {"type": "json_object"}
    try:
        return _reply_text(_post(settings, payload), settings)
    except _HTTPStatusError as error:
        if error.status != 400 or not state["json_mode"]:
            raise
    state["json_mode"] = False  # the server may not support response_format: try without
    del payload["response_format"]
    return _reply_text(_post(settings, payload), settings)


def request_caption(
    image: str | Path,
    category: str,
    settings: LLMSettings,
    *,
    defects: Sequence[str] | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    on_attempt: Callable[[int, str | None], None] | None = None,
) -> BuildResult:
    """Ask the LLM for a caption of ``image`` and return it once it validates.

    ``category`` is written into the caption; ``defects``, if given, replace the
    model's defect phrases. A reply that is not valid JSON, fails the schema, or fails
    the consistency checks (:func:`consistency_warnings`) is sent back to the model with
    the problem, up to ``settings.retries`` times. If only the consistency checks still
    fail at the end, the last schema-valid caption is returned with its warnings.
    ``on_attempt(n, problem)`` is called after each attempt (``problem`` is ``None`` on
    success).

    Raises:
        CaptionBuildError: transport/HTTP/timeout failure, or no valid caption.
    """
    category = normalize_category(category)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt()},
        _user_message(category, image_data_url(image, max_side)),
    ]
    state = {"json_mode": settings.json_mode}
    best: BuildResult | None = None
    problem = "no attempt was made"
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        reply = None
        try:
            reply = _complete(settings, messages, state)
            data = extract_json(reply)
            if isinstance(data, dict):
                data = {**data, "category": category}
                if defects is not None:
                    data["defects"] = list(defects)
            caption = parse_caption(data, source="the reply")
        except CaptionError as error:
            problem = str(error)
        else:
            warnings = tuple(consistency_warnings(caption))
            best = BuildResult(caption, attempt, warnings)
            if not warnings:
                if on_attempt:
                    on_attempt(attempt, None)
                return best
            problem = "the caption is valid but:\n" + "\n".join(f"  - {w}" for w in warnings)
        if on_attempt:
            on_attempt(attempt, problem)
        if reply is not None:
            messages.append({"role": "assistant", "content": reply})
        messages.append(
            {
                "role": "user",
                "content": f"That reply cannot be used: {problem}\n"
                "Send the corrected, complete JSON object only.",
            }
        )
    if best is not None:
        return best
    raise CaptionBuildError(
        f"The LLM gave no valid caption in {attempts} attempt(s); last problem: {problem}"
    )


def write_caption(caption: CategoryCaption, out: str | Path) -> Path:
    """Write ``caption`` to ``out`` atomically (temporary file, then ``os.replace``)."""
    return write_text(out, caption.to_json())


def build_caption_file(
    image: str | Path,
    category: str,
    out: str | Path,
    settings: LLMSettings,
    *,
    defects: Sequence[str] | None = None,
    overwrite: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    on_attempt: Callable[[int, str | None], None] | None = None,
) -> BuildResult:
    """:func:`request_caption`, then write the file; nothing is written on failure."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"'{out}' already exists; pass --force to overwrite it.")
    if out.exists() and not out.is_file():
        raise ConfigError(f"'{out}' exists and is not a file.")
    result = request_caption(
        image, category, settings, defects=defects, max_side=max_side, on_attempt=on_attempt
    )
    write_caption(result.caption, out)
    return result
