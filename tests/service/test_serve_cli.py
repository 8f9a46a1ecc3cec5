"""``anomalign serve``: argument checks (one-line errors, exit 2) and a real run with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from anomalign.cli import main
from anomalign.cli.serve import parse_bundles
from anomalign.errors import ConfigError


def test_parse_bundles_names(bundle_path: Path, tmp_path: Path) -> None:
    assert parse_bundles([str(bundle_path)]) == [("synth", bundle_path)]
    assert parse_bundles([f"line-2={bundle_path}", str(bundle_path)]) == [
        ("line-2", bundle_path),
        ("synth", bundle_path),
    ]
    with pytest.raises(ConfigError, match="Two bundles are named 'synth'"):
        parse_bundles([str(bundle_path), str(bundle_path)])
    with pytest.raises(ConfigError, match="cannot name a detector"):
        parse_bundles([f"bad name={bundle_path}"])
    with pytest.raises(ConfigError, match="does not exist"):
        parse_bundles([str(tmp_path / "missing.anomalign")])
    odd = tmp_path / "a=b.anomalign"  # a file whose name holds '=' is a path, not NAME=PATH
    odd.write_bytes(bundle_path.read_bytes())
    with pytest.raises(ConfigError, match="'a=b' cannot name a detector"):
        parse_bundles([str(odd)])
    assert parse_bundles([f"odd={odd}"]) == [("odd", odd)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.anomalign"], "does not exist"),
        (["{bundle}", "--host", "0.0.0.0"], "API key"),
        (["{bundle}", "--api-key-env", "ANOMALIGN_TEST_UNSET_KEY"], "unset or empty"),
        (["{bundle}", "--max-batch", "0"], "max_batch must be positive"),
        (["{bundle}", "--port", "70000"], "--port"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    arguments: list[str], message: str, bundle_path: Path, capsys: pytest.CaptureFixture
) -> None:
    os.environ.pop("ANOMALIGN_TEST_UNSET_KEY", None)
    argv = ["serve", *(a.replace("{bundle}", str(bundle_path)) for a in arguments)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anomalign serve: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_answers_and_stops_gracefully_on_sigterm(
    bundle_path: Path, test_images: list[Path]
) -> None:
    port = _free_port()
    env = {**os.environ, "ANOMALIGN_TEST_KEY": "k-123", "PYTHONUNBUFFERED": "1"}
    entry = "import sys; from anomalign.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "serve", f"line={bundle_path}"]
    command += ["--port", str(port), "--api-key-env", "ANOMALIGN_TEST_KEY", "--max-wait-ms", "1"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        until = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < until, "server did not become ready"
            time.sleep(0.2)
        files = [("file", (test_images[0].name, test_images[0].read_bytes(), "image/png"))]
        reply = httpx.post(
            f"{url}/v1/detectors/line/predict", files=files, headers={"X-API-Key": "k-123"}
        )
        assert reply.status_code == 200 and reply.json()["detector"] == "line"
        assert httpx.post(f"{url}/v1/detectors/line/predict", files=files).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Finished server process" in output and "Traceback" not in output
    assert "UNTRAINED BACKBONE" in output
