"""Benchmark prompt-set encoding: full length vs truncated, cold vs cached (issue 19).

Encodes AnoCLIP's prompt set for one category (924 prompts: normal and abnormal states
x templates) with the paper's text tower, random weights (timing only), and prints,
measured in this one run:

* full length (77 tokens) vs causal truncation (``max_eot + 1`` rounded to 16), and
  whether the two are bit-identical;
* cold (encode + write the disk cache) vs cached, in a fresh encoder (what a new process
  pays: hashing the text-tower weights, then reading the file) and with the identity
  already known; and whether the cached tensors are identical.

The cache lives in a temporary folder, never the user's. Example::

    python benchmarks/bench_text.py                 # all 924 prompts
    python benchmarks/bench_text.py --prompts 256   # a quicker subset
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch

from anomalign.backbones import TextEncoder, UntrainedBackboneWarning, load_backbone
from anomalign.backbones.prompt_cache import PromptCache
from anomalign.prompts.state_prompts import build_state_prompts


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16-plus-240:random")
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--domain", default="object", choices=["object", "texture"])
    parser.add_argument("--prompts", type=int, default=None, help="first N prompts (default all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        backbone = load_backbone(args.backbone, device=args.device)
    states = build_state_prompts(args.category, args.domain, False)
    prompts = [*states.normal, *states.abnormal][: args.prompts]
    model, tokenizer, arch = backbone.model, backbone.tokenizer, backbone.spec.arch

    def encoder(**kwargs) -> TextEncoder:
        return TextEncoder(model, tokenizer, name=arch, **kwargs)

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run(text: TextEncoder) -> torch.Tensor:
        out = text.encode(prompts, normalize=False)
        sync()
        return out

    ids = encoder().tokenize(prompts)
    eot = ids.argmax(dim=-1)
    cut = encoder().sequence_length(ids)
    print(
        f"backbone={args.backbone} (random weights) device={args.device} "
        f"threads={torch.get_num_threads()} prompts={len(prompts)} "
        f"eot max={int(eot.max())} mean={float(eot.float().mean()):.1f} -> {cut} positions"
    )
    full, full_s = _timed(lambda: run(encoder(truncate=False, prompt_cache=False)))
    short, short_s = _timed(lambda: run(encoder(prompt_cache=False)))
    with tempfile.TemporaryDirectory() as folder:
        cache = PromptCache(folder)
        cold, cold_s = _timed(lambda: run(encoder(prompt_cache=cache)))
        fresh, fresh_s = _timed(lambda: run(encoder(prompt_cache=cache)))  # hashes the weights
        known = encoder(prompt_cache=cache)
        _ = known.identity
        warm, warm_s = _timed(lambda: run(known))
        identity_s = _timed(lambda: encoder().identity)[1]
        size = cache.size()
    rows = [
        ("full length (77 positions)", full_s, full_s),
        (f"truncated ({cut} positions)", short_s, full_s),
        ("truncated, cold + cache write", cold_s, full_s),
        ("cached, fresh encoder (+ weights hash)", fresh_s, full_s),
        ("cached, identity known", warm_s, full_s),
    ]
    print(f"{'path':42s} {'seconds':>9s} {'x faster than full':>19s}")
    for label, seconds, reference in rows:
        print(f"{label:42s} {seconds:9.3f} {reference / seconds:19.1f}")
    print(
        f"truncated vs full: x{full_s / short_s:.2f}, bit-identical: {torch.equal(full, short)}, "
        f"max |diff| {float((full - short).abs().max()):.3g}"
    )
    identical = all(torch.equal(cold, other) for other in (fresh, warm, short))
    print(
        f"cached vs cold (truncated, no cache): x{short_s / fresh_s:.0f} in a fresh encoder, "
        f"x{short_s / warm_s:.0f} with the identity known (weights hash {identity_s:.3f}s); "
        f"identical: {identical}; entry {size / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
