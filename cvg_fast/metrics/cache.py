"""Where metric artefacts are cached, and the key that names them.

Real-data statistics and the synthetic-set evaluator are cached next to the data,
in `DATA/.cvg_cache/` (hidden: the dataset scanner skips it), or, when the data
folder is read-only, in `$CVG_CACHE_DIR` (default `~/.cache/cvg_fast`) under a
sub-folder named for the data path. A key is the sha256 of every option that
changes the cached thing, as canonical JSON, so changing any option misses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def options_key(options: dict) -> str:
    """16 hex digits naming a cache entry: sha256 of the options as sorted, compact JSON."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(data_dir: str | os.PathLike) -> Path:
    """A writable cache folder for artefacts derived from the data in `data_dir`."""
    data = Path(data_dir).expanduser().absolute()
    local = data / ".cvg_cache"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass  # read-only data folder: fall through to the user cache
    root = Path(os.environ.get("CVG_CACHE_DIR", "~/.cache/cvg_fast")).expanduser()
    sub = root / f"{data.name}-{hashlib.sha256(str(data).encode()).hexdigest()[:12]}"
    sub.mkdir(parents=True, exist_ok=True)
    return sub


def file_sha256(path: str | os.PathLike, digits: int = 16) -> str:
    """sha256 of a file's bytes (first `digits` hex digits): names weights in every protocol."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:digits]
