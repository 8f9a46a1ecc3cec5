"""Persistent cache of encoded prompt sets (one safetensors file per set).

An entry is keyed by the text tower's identity (architecture, structure, a hash of its
weights, the tokenizer and context length: :attr:`TextEncoder.identity`) and the exact
prompt texts. Files are written atomically
(:func:`anomalign.io.write_bytes`: temporary file + ``os.replace``), so concurrent writers
of the same entry each publish a complete file and readers never see a partial one; the
folder is kept under a size bound by deleting the least recently used entries (reads
refresh an entry's mtime).

Environment:
    ``ANOMALIGN_CACHE_DIR``: root cache folder (default: the platform's user cache
    folder for "anomalign"); prompt sets live in its ``prompts/`` subfolder.
    ``ANOMALIGN_PROMPT_CACHE=0``: disable the cache.
    ``ANOMALIGN_PROMPT_CACHE_MAX_MB``: size bound (default 512).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from anomalign.io import TMP_SUFFIX, write_bytes

logger = logging.getLogger(__name__)

ENV_DIR = "ANOMALIGN_CACHE_DIR"
ENV_SWITCH = "ANOMALIGN_PROMPT_CACHE"
ENV_MAX_MB = "ANOMALIGN_PROMPT_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 512 * 2**20
#: Bumped whenever the meaning of a cached tensor changes.
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_STALE_TEMP_SECONDS = 3600.0
_OFF = {"0", "false", "no", "off"}


def cache_root() -> Path:
    """The package's cache folder: ``$ANOMALIGN_CACHE_DIR`` or the user cache folder."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("anomalign"))


def prompt_cache_enabled() -> bool:
    """False when ``ANOMALIGN_PROMPT_CACHE`` is 0/false/no/off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def _max_bytes_from_env() -> int:
    value = os.environ.get(ENV_MAX_MB)
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return max(0, int(float(value) * 2**20))
    except ValueError:
        logger.warning("Ignoring %s=%r (not a number of MB).", ENV_MAX_MB, value)
        return DEFAULT_MAX_BYTES


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return dict(header.get("__metadata__") or {})


class PromptCache:
    """A folder of encoded prompt sets with a size bound (LRU by mtime).

    Args:
        directory: the folder (default: ``cache_root() / "prompts"``, read when used).
        max_bytes: total size bound (default: ``$ANOMALIGN_PROMPT_CACHE_MAX_MB`` or 512 MB).
    """

    def __init__(self, directory: str | Path | None = None, max_bytes: int | None = None):
        self._directory = Path(directory) if directory is not None else None
        self._max_bytes = max_bytes

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else cache_root() / "prompts"

    @property
    def max_bytes(self) -> int:
        return self._max_bytes if self._max_bytes is not None else _max_bytes_from_env()

    @staticmethod
    def key(identity: str, prompts: Sequence[str]) -> str:
        """Entry name: SHA-256 of the tower identity (weights, tokenizer, context) and the
        exact prompt texts, in order."""
        digest = hashlib.sha256()
        digest.update(f"anomalign-prompts-v{FORMAT_VERSION}|{identity}|".encode())
        digest.update(json.dumps(list(prompts), ensure_ascii=False).encode())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def get(self, key: str, rows: int | None = None) -> torch.Tensor | None:
        """The stored embeddings of ``key`` (CPU float32), or None when absent or unreadable."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            meta = _metadata(data)
            tensor = load_safetensors(data)["embeddings"]
        except Exception:  # a foreign or damaged file: drop it and recompute
            logger.warning("Discarding unreadable prompt-cache entry %s.", path)
            path.unlink(missing_ok=True)
            return None
        if meta.get("key") != key or meta.get("format") != str(FORMAT_VERSION):
            return None
        if rows is not None and tensor.shape[0] != rows:
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves hits
            os.utime(path)  # most recently used
        return tensor

    def put(self, key: str, embeddings: torch.Tensor, **metadata: object) -> Path | None:
        """Store ``embeddings`` under ``key`` atomically, then enforce the size bound.

        Failures to write (read-only or full disk) are logged, never raised: the cache
        only saves time.
        """
        path = self.path(key)
        meta = {"format": str(FORMAT_VERSION), "key": key, "created": f"{time.time():.3f}"}
        meta.update({name: str(value) for name, value in metadata.items()})
        tensor = embeddings.detach().to("cpu", torch.float32).contiguous()
        try:
            write_bytes(path, save_safetensors({"embeddings": tensor}, metadata=meta))
        except OSError as error:
            logger.warning("Could not write the prompt cache entry %s: %s", path, error)
            return None
        self.evict()
        return path

    def entries(self) -> list[tuple[Path, os.stat_result]]:
        """Cache files with their stat, oldest (least recently used) first."""
        found = []
        try:
            candidates = list(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            return []
        for path in candidates:
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
        found.sort(key=lambda item: (item[1].st_mtime_ns, item[0].name))
        return found

    def size(self) -> int:
        """Total bytes of the cache files."""
        return sum(stat.st_size for _, stat in self.entries())

    def evict(self, max_bytes: int | None = None) -> list[Path]:
        """Delete least recently used entries until the total is within the bound."""
        bound = self.max_bytes if max_bytes is None else max_bytes
        self._remove_stale_temporaries()
        entries = self.entries()
        total = sum(stat.st_size for _, stat in entries)
        removed = []
        for path, stat in entries:
            if total <= bound:
                break
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            total -= stat.st_size
        return removed

    def clear(self) -> None:
        """Delete every entry."""
        self.evict(max_bytes=0)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files left by writers that died before ``os.replace``."""
        limit = time.time() - _STALE_TEMP_SECONDS
        try:
            temporaries = list(self.directory.glob(f".*{TMP_SUFFIX}"))
        except OSError:
            return
        for path in temporaries:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                continue


def open_prompt_cache(force: bool = False) -> PromptCache | None:
    """The default cache, or None when disabled by ``ANOMALIGN_PROMPT_CACHE=0``.

    ``force`` returns the cache even when the environment disables it (an explicit
    ``disk_cache=True`` argument).
    """
    if not force and not prompt_cache_enabled():
        return None
    return PromptCache()
