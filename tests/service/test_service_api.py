"""The service's endpoints through FastAPI's test client: results, formats, probes, docs."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import png_bytes, running

from anomalign.data.images import load_rgb
from anomalign.service import ServedDetector


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_lists_detectors_with_their_provenance(served: ServedDetector) -> None:
    with running([served]) as client:
        body = client.get("/v1/detectors").json()
        (entry,) = body["detectors"]
        assert entry["name"] == "synth" and entry["method"] == "anoclip"
        assert entry["backbone"] == "anomalign-tiny:random"
        assert entry["untrained_backbone"] is True
        assert entry["threshold"]["mode"] == "fpr" and entry["threshold"]["fpr"] == 0.25
        assert entry["calibration"]["n_images"] == 4
        assert entry["fit"]["category"] == "synth_texture"
        # zero-shot: the 4 normal reference images are unbiased validation scores
        assert len(entry["validation_scores"]) == 4
        achieved = sum(s >= entry["threshold"]["value"] for s in entry["validation_scores"]) / 4
        assert achieved == entry["threshold"]["stats"]["achieved_fpr"]
        assert entry["normal_spread"] == pytest.approx(
            entry["calibration"]["score_high"] - entry["calibration"]["score_low"]
        )
        assert "confidence" in body["confidence_rule"]
        assert client.get("/v1/detectors/synth").json() == entry
        missing = client.get("/v1/detectors/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == "unknown_detector"
        assert "synth" in missing.json()["detail"]


def test_predict_multipart_matches_in_process_predict(
    served: ServedDetector, test_images: list[Path]
) -> None:
    expected = served.detector.predict([load_rgb(p) for p in test_images])
    with running([served]) as client:
        reply = client.post("/v1/detectors/synth/predict", files=_files(test_images))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["detector"] == "synth" and body["untrained_backbone"] is True
    assert "UNTRAINED BACKBONE" in body["warning"]
    assert body["threshold"] == pytest.approx(served.threshold)
    scores = [r["score"] for r in body["results"]]
    np.testing.assert_allclose(scores, expected.scores, rtol=1e-6)
    decisions = [r["decision"] == "anomalous" for r in body["results"]]
    assert decisions == [bool(d) for d in expected.decisions]
    assert [r["name"] for r in body["results"]] == [p.name for p in test_images]
    assert all(r["map_png"] is None and r["overlay_png"] is None for r in body["results"])


def test_confidence_follows_the_calibrated_rule(
    served: ServedDetector, test_images: list[Path]
) -> None:
    spread = served.detector.calibration.score_spread
    assert spread is not None and spread > 0
    with running([served]) as client:
        results = client.post("/v1/detectors/synth/predict", files=_files(test_images)).json()[
            "results"
        ]
    for result in results:
        distance = (result["score"] - served.threshold) / spread
        assert result["margin"] == pytest.approx(distance)
        assert result["confidence"] == pytest.approx(1 / (1 + 9 ** -abs(distance)))
        assert 0.5 <= result["confidence"] <= 1.0


def test_maps_and_overlays_on_request(served: ServedDetector, test_images: list[Path]) -> None:
    image = test_images[-1]
    with running([served]) as client:
        reply = client.post(
            "/v1/detectors/synth/predict?maps=true&overlays=true", files=_files([image])
        )
    (result,) = reply.json()["results"]
    amap = Image.open(io.BytesIO(base64.b64decode(result["map_png"])))
    assert amap.mode.startswith("I;16") and amap.size == (64, 64)
    expected = served.detector.predict([load_rgb(image)], output_size="image").map_uint16(0)
    np.testing.assert_array_equal(np.asarray(amap), expected)
    overlay = Image.open(io.BytesIO(base64.b64decode(result["overlay_png"])))
    assert overlay.mode == "RGB"
    # the panel is scaled up to 256 px, with a colour bar beside it and the untrained mark above
    assert overlay.width > 256 and overlay.height > 256


def test_predict_json_base64_equals_multipart(
    served: ServedDetector, test_images: list[Path]
) -> None:
    images = test_images[:3]
    payload = {
        "images": [
            {"data": base64.b64encode(images[0].read_bytes()).decode(), "name": "a"},
            {"data": "data:image/png;base64," + base64.b64encode(images[1].read_bytes()).decode()},
            {"data": base64.b64encode(images[2].read_bytes()).decode()},
        ],
        "maps": True,
    }
    with running([served]) as client:
        by_json = client.post("/v1/detectors/synth/predict", json=payload).json()["results"]
        by_form = client.post("/v1/detectors/synth/predict", files=_files(images)).json()["results"]
        bad = client.post("/v1/detectors/synth/predict", json={"images": [{"data": "not base64!"}]})
        empty = client.post("/v1/detectors/synth/predict", json={"images": []})
        broken = client.post(
            "/v1/detectors/synth/predict",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert [r["score"] for r in by_json] == [r["score"] for r in by_form]
    assert by_json[0]["name"] == "a" and by_json[1]["name"] is None
    assert all(r["map_png"] for r in by_json)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_base64"
    assert empty.status_code == 422 and empty.json()["error"] == "invalid_request"
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"


def test_format_is_read_from_the_bytes(served: ServedDetector) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    with running([served]) as client:
        # a real PNG with a misleading name and content type is read as a PNG
        png = client.post(
            "/v1/detectors/synth/predict",
            files=[("file", ("scan.txt", png_bytes(rgb), "text/plain"))],
        )
        jpeg = client.post(
            "/v1/detectors/synth/predict",
            files=[("file", ("scan.png", png_bytes(rgb, fmt="JPEG"), "image/png"))],
        )
        # text named .png with an image content type is refused
        fake = client.post(
            "/v1/detectors/synth/predict",
            files=[("file", ("scan.png", b"GIF89a? no: plain text", "image/png"))],
        )
        truncated = client.post(
            "/v1/detectors/synth/predict",
            files=[("file", ("cut.png", png_bytes(rgb)[:60], "image/png"))],
        )
        wrong_type = client.post(
            "/v1/detectors/synth/predict",
            content=png_bytes(rgb),
            headers={"content-type": "image/png"},
        )
        other_field = [("other", ("a.png", png_bytes(rgb), "image/png"))]
        nothing = client.post("/v1/detectors/synth/predict", files=other_field)
        text_field = client.post(
            "/v1/detectors/synth/predict", data={"file": "x"}, files=other_field
        )
        form = client.post("/v1/detectors/synth/predict", data={"file": "x"})
    assert png.status_code == 200 and png.json()["results"][0]["width"] == 56
    assert jpeg.status_code == 200 and jpeg.json()["results"][0]["height"] == 40
    assert fake.status_code == 415 and fake.json()["error"] == "unsupported_media_type"
    assert truncated.status_code == 400 and truncated.json()["error"] == "bad_image"
    assert wrong_type.status_code == 415
    assert nothing.status_code == 400 and nothing.json()["error"] == "no_images"
    assert text_field.status_code == 400 and "files" in text_field.json()["detail"]
    assert form.status_code == 415  # url-encoded forms carry no files


def test_probes_metrics_docs_and_page(served: ServedDetector, test_images: list[Path]) -> None:
    with running([served]) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        assert client.get("/readyz").json() == {"status": "ready", "detectors": ["synth"]}
        client.post("/v1/detectors/synth/predict", files=_files(test_images[:2]))
        client.post("/v1/detectors/synth/predict", files=[("file", ("x", b"text", "x/y"))])
        metrics = client.get("/metrics")
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
        swagger_js = client.get("/docs-assets/swagger-ui-bundle.js")
        page = client.get("/")
        script = client.get("/static/app.js")
        missing = client.get("/no/such/page")
        wrong_method = client.delete("/v1/detectors")
        bad_query = client.post(
            "/v1/detectors/synth/predict?maps=maybe", files=_files(test_images[:1])
        )
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'anomalign_requests_total{method="POST",route="/v1/detectors/{name}/predict",'
        'status="200"} 1.0' in text
    )
    assert 'anomalign_errors_total{code="unsupported_media_type"} 1.0' in text
    assert 'anomalign_batch_size_count{detector="synth"}' in text
    assert 'anomalign_images_total{detector="synth"}' in text
    assert 'anomalign_request_seconds_bucket{le="0.5",route="/v1/detectors/{name}/predict"}' in text
    assert 'anomalign_queue_depth{detector="synth"} 0.0' in text
    assert "anomalign_in_flight 0.0" in text
    predict_body = schema["paths"]["/v1/detectors/{name}/predict"]["post"]["requestBody"]
    assert set(predict_body["content"]) == {"multipart/form-data", "application/json"}
    assert "/v1/detectors" in schema["paths"] and "/healthz" in schema["paths"]
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert swagger_js.status_code == 200 and len(swagger_js.content) > 100_000
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no external asset
    assert script.status_code == 200 and "redecide" in script.text
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error", "detail"}
    assert bad_query.status_code == 422 and bad_query.json()["error"] == "invalid_request"


def test_several_detectors_are_served_by_name(
    served: ServedDetector, bundle_path: Path, tiny_backbone, test_images: list[Path]
) -> None:
    from anomalign.service import load_served

    other = load_served("other", bundle_path, backbone=tiny_backbone)
    other.detector.set_threshold(-1e9)  # everything anomalous
    with running([served, other]) as client:
        names = [d["name"] for d in client.get("/v1/detectors").json()["detectors"]]
        first = client.post("/v1/detectors/synth/predict", files=_files(test_images))
        second = client.post("/v1/detectors/other/predict", files=_files(test_images))
        traversal = client.post("/v1/detectors/..%2Fsynth/predict", files=_files(test_images))
    assert names == ["synth", "other"]
    assert [r["score"] for r in first.json()["results"]] == [
        r["score"] for r in second.json()["results"]
    ]
    assert {r["decision"] for r in second.json()["results"]} == {"anomalous"}
    assert traversal.status_code == 404


def test_the_app_starts_again_after_a_shutdown(
    served: ServedDetector, test_images: list[Path]
) -> None:
    from fastapi.testclient import TestClient

    from anomalign.service import create_app

    app = create_app([served])
    for _ in range(2):
        with TestClient(app) as client:
            reply = client.post("/v1/detectors/synth/predict", files=_files(test_images[:1]))
            assert reply.status_code == 200, reply.text
