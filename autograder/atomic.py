"""Writing a file so that a reader, or an interrupted run, sees the old file or the new one, never half."""

import json
import os
import tempfile
from pathlib import Path


def write_atomic(data, path, mode=None) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` through a temp file in the same folder and
    os.replace. ``mode`` replaces mkstemp's 0600 where other processes must read the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(obj, path, mode=None) -> None:
    """A JSON document written with write_atomic; ValueError (before anything is written) when
    ``obj`` holds something JSON cannot say (NaN, an object)."""
    write_atomic(json.dumps(obj, indent=2, allow_nan=False) + "\n", path, mode)
