"""The training check's cache on disk: content-addressed JSON entries, one file per key.

It serves the baseline (the reference model without BN's accuracy, the same for every
submission, so a class pays for it once) and the memo (a whole comparison, by architecture): the
caller (training.py) says what a key holds and what a valid value is; this module only stores.
An entry lives in ``<cache dir>/<kind>/<sha256 of the key>.json`` and holds its key, so a read
checks that it is the key asked for: a missing, corrupt or foreign entry reads as missing.
Entries are written atomically (graders running in parallel read the old file or the new one,
never half; graders writing the same entry at once write the same bytes) and 0644, so that a
class's other graders can read them; an unwritable cache only costs time. Nothing here imports
TensorFlow or Keras, so a memoized comparison needs neither.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path

from autograder import data
from autograder.atomic import write_atomic
from autograder.provenance import sha256_file
from autograder.settings import default_cache_dir

BASELINE = "training-baseline"      # the kinds of entries: one folder each inside the cache dir
MEMO = "training-memo"


def entry_path(cache_dir: Path | None, kind: str, key: dict) -> Path:
    """The file of ``key``'s entry of ``kind`` in ``cache_dir`` (None: default_cache_dir())."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / kind / f"{name}.json"


def read(path: Path, key: dict):
    """The value stored at ``path`` for ``key``, or None when the file is missing, corrupt or holds
    another key. The caller checks that the value is one it could have written."""
    try:
        entry = json.loads(Path(path).read_text())
        if isinstance(entry, dict) and entry.get("key") == key:
            return entry.get("value")
    except (OSError, ValueError):
        pass
    return None


def write(path: Path, key: dict, value) -> None:
    """Store ``value`` (plain JSON) for ``key`` at ``path``, atomically; a failure is ignored."""
    try:
        write_atomic(json.dumps({"key": key, "value": value}, sort_keys=True, indent=1), path, mode=0o644)
    except (OSError, ValueError):
        pass  # an unwritable cache only costs time: the next grading recomputes


# ---------------------------------------------------------------------------------------------
# Pieces of keys: what a cached number depends on besides the caller's own fields


def source_hash(*objects) -> str:
    """A hash of the source code of ``objects`` (modules, functions): a changed one is another key."""
    digest = hashlib.sha256()
    for obj in objects:
        try:
            digest.update(inspect.getsource(obj).encode())
        except (OSError, TypeError):  # no source shipped: the versions in the key still apply
            digest.update(getattr(obj, "__qualname__", repr(obj)).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes, once per (path, size, mtime) in a process; ~0.1 s for the images."""
    return sha256_file(path)


def training_files_sha256() -> str:
    """One hash of the raw (compressed) files the training subset is decoded from: the same files
    decode to the same subset, and hashing the bytes costs far less than decoding them."""
    folder = data.find_dataset_dir()
    digest = hashlib.sha256()
    for name in ("train_images", "train_labels"):
        path = (folder / data.FILES[name]).resolve()
        stat = path.stat()
        digest.update(f"{data.FILES[name]}:{_file_sha256(str(path), stat.st_size, stat.st_mtime_ns)};".encode())
    return digest.hexdigest()
