"""``anomalign captions`` sub-commands, run in-process."""

from __future__ import annotations

import json

import pytest
from llm_stub import completion, good_reply

import anomalign.cli as cli
from anomalign.prompts.captions import load_caption_file, load_shipped


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``anomalign ARGS`` with only the captions command registered."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("captions",))

    def invoke(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


def test_captions_is_registered():
    assert "captions" in cli.COMMAND_MODULES


def test_list_and_show(run):
    code, out, _ = run("captions", "list")
    assert code == 0 and "metal_nut" in out and "pipe_fryum" in out
    code, out, _ = run("captions", "list", "--dataset", "visa")
    assert code == 0 and "pcb4" in out and "zipper" not in out
    code, out, _ = run("captions", "show", "transistor")
    assert code == 0 and "metal legs" in out and "transistor with a bent leg" in out


def test_show_json_round_trips(run, tmp_path):
    code, out, _ = run("captions", "show", "visa/pcb3", "--json")
    assert code == 0
    path = tmp_path / "pcb3.json"
    path.write_text(out, encoding="utf-8")
    assert load_caption_file(path) == load_shipped("pcb3")
    code, out, _ = run("captions", "show", str(path), "--json")
    assert code == 0 and json.loads(out)["category"] == "pcb3"


def test_show_unknown_name_is_a_clean_error(run):
    code, _, err = run("captions", "show", "gearbox")
    assert code == 2 and "No shipped caption for category 'gearbox'" in err


def test_validate(run, tmp_path, caption_data):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(caption_data), encoding="utf-8")
    caption_data["Level_3"][0]["color"] = ["teal"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(caption_data), encoding="utf-8")
    code, out, _ = run("captions", "validate", str(good))
    assert code == 0 and out.startswith("ok ")
    code, out, err = run("captions", "validate", str(good), str(bad))
    assert code == 2
    assert "bad.json" in out and "Level_3.color: expected 2 entries (one per entity), got 1" in out
    assert "1 of 2 caption file(s) failed validation" in err


def test_validate_strict_fails_on_warnings(run, tmp_path, caption_data):
    caption_data["caption"] = "Something else entirely."
    path = tmp_path / "loose.json"
    path.write_text(json.dumps(caption_data), encoding="utf-8")
    code, out, _ = run("captions", "validate", str(path))
    assert code == 0 and "warning: caption: does not mention" in out
    code, _, _ = run("captions", "validate", "--strict", str(path))
    assert code == 2


def test_vocab(run):
    code, out, _ = run("captions", "vocab")
    assert code == 0 and out.splitlines()[0].startswith("color (")


def test_build_via_cli_with_environment(run, stub, image, tmp_path, monkeypatch, caption_data):
    monkeypatch.setenv("ANOMALIGN_LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("ANOMALIGN_LLM_MODEL", "stub-model")
    monkeypatch.setenv("ANOMALIGN_LLM_API_KEY", "sk-env")
    stub.replies += [completion("nope"), completion(good_reply(caption_data))]
    out = tmp_path / "mine.json"
    args = ["captions", "build", "--image", str(image), "--category", "My Part", "--out", str(out)]
    code, stdout, err = run(*args, "--timeout", "5", "--defect", "{} with a dent")
    assert code == 0, err
    assert "attempt 1:" in err and f"wrote {out}" in stdout
    caption = load_caption_file(out)
    assert caption.category == "my_part" and caption.defects == ("{} with a dent",)
    assert stub.headers[0]["Authorization"] == "Bearer sk-env"
    # The file now exists: a second build refuses without --force and calls no server.
    code, _, err = run(*args)
    assert code == 2 and "already exists" in err and len(stub.requests) == 2


def test_build_errors_are_clean(run, stub, image, tmp_path, monkeypatch):
    for name in ("ANOMALIGN_LLM_BASE_URL", "OPENAI_BASE_URL", "ANOMALIGN_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "x.json"
    base = ["captions", "build", "--image", str(image), "--category", "x", "--out", str(out)]
    code, _, err = run(*base)
    assert code == 2 and "needs a base URL" in err
    remote = ["--base-url", stub.base_url, "--model", "m"]
    code, _, err = run(*base, *remote, "--defect", "no placeholder")
    assert code == 2 and "--defect[0]" in err and stub.requests == []
    stub.replies.append((401, {"error": {"message": "invalid key"}}))
    code, _, err = run(*base, *remote)
    assert code == 2 and "HTTP 401" in err and "invalid key" in err
    code, _, err = run(*base[:3], str(tmp_path / "missing.png"), *base[4:], *remote)
    assert code == 2 and "missing.png" in err
    assert not out.exists()
