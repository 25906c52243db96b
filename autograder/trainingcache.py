"""The training check's cache on disk: content-addressed JSON entries, one file per key.

It serves the baseline (the reference model without BN's accuracy, the same for every
submission, so a class pays for it once) and the memo (a whole comparison, by architecture): the
caller (training.py) says what a key holds and what a valid value is; this module only stores.
An entry lives in ``<cache dir>/<kind>/<sha256 of the key>.json`` and holds its key, so a read
checks that it is the key asked for: a missing, corrupt or foreign entry reads as missing.
Entries are written atomically (graders running in parallel read the old file or the new one,
never half; graders writing the same entry at once write the same bytes) and 0644, so that a
class's other graders can read them; an unwritable cache only costs time. A grader computing an entry
holds ``<entry>.lock`` (``claimed``), so that graders sharing the cache compute each entry once.
Nothing here imports TensorFlow or Keras, so a memoized comparison needs neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import logging
import os
import time
from pathlib import Path

from autograder import data
from autograder.atomic import write_atomic
from autograder.provenance import sha256_file
from autograder.settings import default_cache_dir

BASELINE = "training-baseline"      # the kinds of entries: one folder each inside the cache dir
MEMO = "training-memo"
LOCK_POLL_SECONDS = 0.05            # how often a grader waiting for another's entry tries its lock again

log = logging.getLogger(__name__)


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


def _lock_descriptor(path: Path):
    """An open descriptor of ``<entry>.lock``, or None when this grader cannot write there: then it
    could not write the entry either, so it claims nothing. Opened for writing, as NFS's locks need."""
    lock = Path(path).with_suffix(".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(lock.parent, os.W_OK):     # its entries could not be written
            return None
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    with contextlib.suppress(OSError):     # 0644 like the entries, whatever the umask (another's file: left)
        os.fchmod(fd, 0o644)
    return fd


def _try_lock(fd: int) -> bool:
    """True once this grader holds the lock, False while another does. A file system without
    locks counts as held: the caller computes, as it would without the lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        log.debug("no lock on the grader cache (%s): computing without it", exc)
        return True


@contextlib.contextmanager
def claimed(path: Path, wait: float, while_waiting=None):
    """Held while this grader computes the entry at ``path``, so that graders sharing the cache (a
    class's grader processes, Dask workers on one file system) compute each entry once. Free: taken at
    once. Held by another grader: ``while_waiting()`` runs first (work this grader would need anyway,
    and the other too), then this waits for the other, up to ``wait`` seconds. Inside, the caller reads
    the entry again and computes it only if it is still missing. The lock costs time only, never a
    result: where it cannot be made, or its holder is still at it after ``wait``, the body runs
    without it. The kernel drops a dead grader's lock."""
    fd = _lock_descriptor(path)
    try:
        if fd is not None and not _try_lock(fd):
            if while_waiting is not None:
                while_waiting()
            deadline = time.monotonic() + wait
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    log.warning("%s: another grader has held it for over %.0f s; computing it here too",
                                Path(path).name, wait)
                    break
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        if fd is not None:
            os.close(fd)


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
