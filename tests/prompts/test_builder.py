"""The caption builder against a local stub of an OpenAI-compatible server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from llm_stub import Reply, StubServer, completion, good_reply
from PIL import Image

from anomalign.errors import ConfigError
from anomalign.prompts.captions import load_caption_file
from anomalign.prompts.captions.builder import (
    CaptionBuildError,
    LLMSettings,
    build_caption_file,
    extract_json,
    image_data_url,
    system_prompt,
)


def settings(stub: StubServer, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "base_url": stub.base_url,
        "model": "stub-model",
        "timeout": 5.0,
        "retry_backoff": 0.01,
    }
    values.update(overrides)
    return LLMSettings(**values)


def test_good_reply_writes_a_valid_file(stub, image, tmp_path, caption_data):
    stub.replies.append(completion(good_reply(caption_data)))
    out = tmp_path / "sub" / "widget.json"
    result = build_caption_file(image, "Widget", out, settings(stub, api_key="sk-test"))
    assert result.attempts == 1 and result.warnings == ()
    written = load_caption_file(out)
    assert written == result.caption
    assert written.category == "widget"
    assert written.level3.colors == ("teal", "silver")
    assert [p.name for p in out.parent.iterdir()] == ["widget.json"]
    # The request: our system prompt, the image as a PNG data URL, JSON mode, auth header.
    (request,) = stub.requests
    assert stub.paths == ["/v1/chat/completions"]
    assert request["model"] == "stub-model"
    assert request["response_format"] == {"type": "json_object"}
    assert request["messages"][0] == {"role": "system", "content": system_prompt()}
    parts = request["messages"][1]["content"]
    assert "widget" in parts[0]["text"].lower()
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"


def test_defects_override_and_fenced_reply(stub, image, tmp_path, caption_data):
    stub.replies.append(completion("Here it is:\n```json\n" + good_reply(caption_data) + "\n```"))
    out = tmp_path / "widget.json"
    result = build_caption_file(
        image, "widget", out, settings(stub), defects=["{} with a bent corner"]
    )
    assert load_caption_file(out).defects == ("{} with a bent corner",)
    assert result.caption.defects == ("{} with a bent corner",)


def test_invalid_json_then_valid_retries_with_feedback(stub, image, tmp_path, caption_data):
    broken = dict(caption_data)
    broken["Level_2"] = [{**caption_data["Level_2"][0], "location": ["center"]}]
    stub.replies += [
        completion("{this is not json"),
        completion(json.dumps(broken)),
        completion(good_reply(caption_data)),
    ]
    seen: list[tuple[int, str | None]] = []
    out = tmp_path / "widget.json"
    result = build_caption_file(
        image, "widget", out, settings(stub), on_attempt=lambda n, p: seen.append((n, p))
    )
    assert result.attempts == 3 and load_caption_file(out) == result.caption
    assert [n for n, _ in seen] == [1, 2, 3] and seen[-1][1] is None
    assert "not valid JSON" in seen[0][1]
    # The second request carries the bad reply and the parse error back to the model.
    second = stub.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": "{this is not json"}
    assert "not valid JSON" in second[-1]["content"]
    third = stub.requests[2]["messages"][-1]["content"]
    assert "Level_2.location: expected 2 entries (one per entity), got 1" in third


def test_always_invalid_gives_clear_error_and_no_file(stub, image, tmp_path):
    stub.replies += [completion("not json at all")] * 3
    out = tmp_path / "widget.json"
    with pytest.raises(
        CaptionBuildError, match=r"no valid caption in 3 attempt\(s\).*not valid JSON"
    ):
        build_caption_file(image, "widget", out, settings(stub, retries=2))
    assert len(stub.requests) == 3
    assert list(tmp_path.iterdir()) == [image]


def test_soft_warnings_are_retried_then_accepted(stub, image, tmp_path, caption_data):
    sloppy = json.loads(good_reply(caption_data))
    sloppy["caption"] = "A teal square thing."
    stub.replies += [completion(json.dumps(sloppy))] * 2
    out = tmp_path / "widget.json"
    result = build_caption_file(image, "widget", out, settings(stub, retries=1))
    assert result.attempts == 2
    assert result.warnings and result.warnings[0].startswith("caption: does not mention")
    assert "does not mention the foreground" in stub.requests[1]["messages"][-1]["content"]
    assert out.is_file()


@pytest.mark.parametrize(
    ("status", "needle"),
    [(500, "HTTP 500.*server exploded"), (401, "HTTP 401.*bad key.*Check the API key")],
)
def test_http_errors_are_clear_and_write_nothing(stub, image, tmp_path, status, needle):
    message = "server exploded" if status == 500 else "bad key"
    stub.replies += [(status, {"error": {"message": message, "type": "x"}})] * 3
    out = tmp_path / "widget.json"
    with pytest.raises(CaptionBuildError, match=needle):
        build_caption_file(image, "widget", out, settings(stub, transport_retries=2))
    assert len(stub.requests) == (3 if status == 500 else 1)  # only 5xx is retried
    assert list(tmp_path.iterdir()) == [image]


def test_5xx_and_connection_errors_are_retried_with_backoff(stub, image, tmp_path, caption_data):
    stub.replies += [(503, {"error": "busy"}), (502, {"error": "gateway"})]
    stub.replies.append(completion(good_reply(caption_data)))
    out = tmp_path / "widget.json"
    started = time.monotonic()
    result = build_caption_file(image, "widget", out, settings(stub, retry_backoff=0.1))
    assert result.caption.category == "widget" and len(stub.requests) == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # waited 0.1 s, then 0.2 s
    closed = StubServer()
    port = closed.server.server_address[1]
    closed.server.server_close()
    dead = LLMSettings(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        timeout=1.0,
        transport_retries=2,
        retry_backoff=0.05,
    )
    started = time.monotonic()
    with pytest.raises(CaptionBuildError, match="Cannot reach the LLM server"):
        build_caption_file(image, "widget", tmp_path / "c.json", dead)
    assert time.monotonic() - started >= 0.05 + 0.1


def _trickle_server(body_bytes: int, delay: float, declared: bool = True):
    """A server answering 200 with ``body_bytes`` bytes, one byte every ``delay`` s."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declared:  # else no length: the body runs until the connection closes
                self.send_header("Content-Length", str(body_bytes))
            self.end_headers()
            try:
                if delay:
                    for _ in range(body_bytes):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(delay)
                else:
                    chunk = b" " * 65536
                    for _ in range(body_bytes // len(chunk)):
                        self.wfile.write(chunk)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server


def test_trickling_server_hits_the_whole_request_deadline(stub, image, tmp_path):
    server = _trickle_server(10_000, 0.05)
    try:
        slow = LLMSettings(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="m", timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(CaptionBuildError, match=r"did not answer within 0.5 s"):
            build_caption_file(image, "widget", tmp_path / "w.json", slow)
        assert time.monotonic() - started < 0.5 + 1.5  # not 10000 * 0.05 s
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("declared", [True, False])
def test_huge_response_body_is_refused(stub, image, tmp_path, declared):
    from anomalign.prompts.captions.builder import MAX_RESPONSE_BYTES

    server = _trickle_server(MAX_RESPONSE_BYTES + 2 * 65536, 0.0, declared=declared)
    try:
        big = LLMSettings(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="m", timeout=10
        )
        with pytest.raises(CaptionBuildError, match=r"more than|announced"):
            build_caption_file(image, "widget", tmp_path / "w.json", big)
    finally:
        server.shutdown()
        server.server_close()


def test_json_mode_is_dropped_when_the_server_rejects_it(stub, image, tmp_path, caption_data):
    stub.replies += [
        (400, {"error": {"message": "response_format not supported"}}),
        completion(good_reply(caption_data)),
    ]
    out = tmp_path / "widget.json"
    build_caption_file(image, "widget", out, settings(stub))
    assert "response_format" in stub.requests[0]
    assert "response_format" not in stub.requests[1]
    assert out.is_file()


def test_timeout_is_clear_and_writes_nothing(stub, image, tmp_path, caption_data):
    def slow() -> Reply:
        time.sleep(0.6)
        return completion(good_reply(caption_data))

    stub.replies.append(slow)
    out = tmp_path / "widget.json"
    started = time.monotonic()
    with pytest.raises(CaptionBuildError, match=r"did not answer within 0.2 s"):
        build_caption_file(image, "widget", out, settings(stub, timeout=0.2))
    assert time.monotonic() - started < 0.6
    assert list(tmp_path.iterdir()) == [image]


def test_unreachable_server_and_malformed_response(stub, image, tmp_path):
    stub.replies.append((200, b"<html>not json</html>"))
    with pytest.raises(CaptionBuildError, match="did not return JSON"):
        build_caption_file(image, "widget", tmp_path / "a.json", settings(stub))
    stub.replies.append((200, {"object": "list", "data": []}))
    with pytest.raises(CaptionBuildError, match=r"expected choices\[0\]\.message\.content"):
        build_caption_file(image, "widget", tmp_path / "b.json", settings(stub))
    closed = StubServer()
    port = closed.server.server_address[1]
    closed.server.server_close()
    dead = LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=1.0)
    with pytest.raises(CaptionBuildError, match="Cannot reach the LLM server"):
        build_caption_file(image, "widget", tmp_path / "c.json", dead)
    assert list(tmp_path.iterdir()) == [image]


def test_existing_output_is_kept_unless_overwrite(stub, image, tmp_path, caption_data):
    out = tmp_path / "widget.json"
    out.write_text("precious", encoding="utf-8")
    with pytest.raises(ConfigError, match="already exists"):
        build_caption_file(image, "widget", out, settings(stub))
    assert stub.requests == [] and out.read_text() == "precious"
    stub.replies.append((500, {"error": "down"}))
    with pytest.raises(CaptionBuildError):
        build_caption_file(image, "widget", out, settings(stub), overwrite=True)
    assert out.read_text() == "precious"
    stub.replies.append(completion(good_reply(caption_data)))
    build_caption_file(image, "widget", out, settings(stub), overwrite=True)
    assert load_caption_file(out).category == "widget"


def test_settings_resolve_from_options_and_environment():
    env = {"OPENAI_BASE_URL": "http://h/v1", "ANOMALIGN_LLM_MODEL": "m", "OPENAI_API_KEY": "k"}
    resolved = LLMSettings.resolve(environ=env)
    assert (resolved.base_url, resolved.model, resolved.api_key) == ("http://h/v1", "m", "k")
    assert resolved.endpoint == "http://h/v1/chat/completions"
    env["ANOMALIGN_LLM_BASE_URL"] = "http://mine/v1/"
    assert LLMSettings.resolve(environ=env).endpoint == "http://mine/v1/chat/completions"
    assert LLMSettings.resolve(base_url="http://x/v1", environ=env).base_url == "http://x/v1"
    assert "'k'" not in repr(resolved)  # the API key is never shown
    with pytest.raises(ConfigError, match=r"base URL.*and a model name"):
        LLMSettings.resolve(environ={})
    with pytest.raises(ConfigError, match="retries"):
        LLMSettings.resolve(environ=env, retries=-1)


def test_image_data_url_is_a_shrunk_png(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 120), (10, 20, 30)).save(path)
    url = image_data_url(path, max_side=100)
    import base64
    import io

    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG" and decoded.size == (100, 40)


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure! {"a": 1} Hope this helps.') == {"a": 1}
    assert extract_json('```\n{"a": 1}\n```') == {"a": 1}
