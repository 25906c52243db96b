"""The worker: runs a student's notebook code inside the sandbox and answers the grader's requests.

It is started as a plain script inside the sandbox, where the rest of this package is not
visible, so it imports nothing from it. It speaks JSON lines over two private file descriptors;
the student's code sees stdin, stdout and stderr pointing at /dev/null.

Nothing the worker says is trusted: the grader decodes every answer as plain data and judges it
itself. The worker only runs code and converts what it returns.

Requests (one JSON object a line) and answers:
  {"op": "run_cell", "source": str, "seconds": float}
      -> {"ok": true} | {"ok": false, "error": "NameError: ..."}
  {"op": "call", "function": str, "args": [...], "kwargs": {...}, "returns": "array" | "model",
   "seconds": float}
      -> {"ok": true, "value": <encoded>, "args_after": [...]}
       | {"ok": false, "kind": "missing" | "not_implemented" | "raised" | "timeout" | "bad_return",
          "error": str}
Arrays travel as {"ndarray": base64 of little-endian float64, "shape": [...], "dtype": str}.
"""

import base64
import builtins
import json
import os
import re
import signal
import sys
import traceback
import types

MAX_ELEMENTS = 8_000_000        # 64 MB of float64: far above any answer the checks expect
MAX_MODEL_JSON = 4_000_000


class CellTimeout(BaseException):
    """Raised by the alarm; a BaseException so that a student's ``except Exception`` does not swallow it."""


def _alarm(signum, frame):
    raise CellTimeout()


def _take_protocol_streams():
    """Move the protocol to private descriptors and point 0, 1, 2 at /dev/null."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr = open(os.devnull, "w")
    return requests, answers


_LINE_MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.M)
_BODY_CELL_MAGICS = {"time", "timeit", "capture", "prun"}


def python_source(cell_source: str) -> str:
    """IPython cell -> plain Python: line magics and shell escapes become ``pass``; a cell magic
    that only wraps Python (``%%time``) is dropped, any other cell magic skips the cell."""
    if cell_source.lstrip().startswith("%%"):
        first, _, body = cell_source.lstrip().partition("\n")
        name = first[2:].split()[0] if first[2:].split() else ""
        if name not in _BODY_CELL_MAGICS:
            return ""
        cell_source = body
    return _LINE_MAGIC.sub(lambda m: m.group(1) + "pass", cell_source)


class _IPythonStub:
    """What ``get_ipython()`` returns: magics do nothing here."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CellTimeout):
        return "TimeoutError: time limit reached"
    line = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    if frames:
        line = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})"
    text = f"{type(exc).__name__}: {exc}"
    return (text[:500] + "...") if len(text) > 500 else text + line


def _limited(seconds, fn, *args, **kwargs):
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 0.001))
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def encode_array(value, np):
    array = np.array(value, dtype=np.float64, copy=True)
    if array.size > MAX_ELEMENTS:
        raise ValueError(f"returned {array.size:,} numbers, more than the {MAX_ELEMENTS:,} allowed")
    dtype = str(getattr(value, "dtype", type(value).__name__))
    return {"ndarray": base64.b64encode(array.astype("<f8").tobytes()).decode("ascii"),
            "shape": list(array.shape), "dtype": dtype[:40]}


def decode_argument(value, np):
    if isinstance(value, dict) and "ndarray" in value:
        data = base64.b64decode(value["ndarray"])
        return np.frombuffer(data, dtype="<f8").reshape(value["shape"]).copy()
    if isinstance(value, list):     # JSON has no tuples; shapes are passed as tuples
        return tuple(value)
    return value


class Worker:
    def __init__(self):
        # The student's cells run in a fresh __main__, as in a kernel; this script's own globals
        # stay in the module object it was started as.
        student_main = types.ModuleType("__main__")
        sys.modules["__main__"] = student_main
        self.namespace = vars(student_main)
        self.namespace.update({"__builtins__": builtins, "display": lambda *a, **k: None,
                               "get_ipython": _IPythonStub})
        self.cells_run = 0

    def run_cell(self, request):
        self.cells_run += 1
        try:
            code = compile(python_source(request["source"]), f"<cell {self.cells_run}>", "exec")
            _limited(request["seconds"], exec, code, self.namespace)
        except BaseException as exc:  # noqa: BLE001 - anything the student's code does is a result
            return {"ok": False, "error": _describe(exc)}
        return {"ok": True}

    def call(self, request):
        import numpy as np
        name = request["function"]
        function = self.namespace.get(name)
        if not callable(function):
            return {"ok": False, "kind": "missing", "error": f"{name} is not defined in the notebook"}
        args = [decode_argument(a, np) for a in request.get("args", [])]
        kwargs = {k: decode_argument(v, np) for k, v in request.get("kwargs", {}).items()}
        try:
            value = _limited(request["seconds"], function, *args, **kwargs)
        except NotImplementedError:
            return {"ok": False, "kind": "not_implemented", "error": f"{name} is not implemented yet "
                    "(it still raises NotImplementedError)"}
        except CellTimeout:
            return {"ok": False, "kind": "timeout", "error": f"{name} did not return within "
                    f"{request['seconds']:.0f} s"}
        except BaseException as exc:  # noqa: BLE001
            return {"ok": False, "kind": "raised", "error": f"{name} raised {_describe(exc)}"}
        try:
            encoded = _limited(request["seconds"], self.encode, value, request["returns"], np)
        except BaseException as exc:  # noqa: BLE001
            return {"ok": False, "kind": "bad_return", "error": f"{name} returned something the grader "
                    f"cannot use: {_describe(exc)}"}
        after = [encode_array(a, np) if isinstance(a, np.ndarray) else None for a in args]
        return {"ok": True, "value": encoded, "args_after": after}

    @staticmethod
    def encode(value, returns, np):
        if returns == "array":
            return encode_array(value, np)
        to_json = getattr(value, "to_json", None)
        if not callable(to_json):
            raise TypeError(f"a {type(value).__name__}, not a keras.Model")
        config = to_json()
        if not isinstance(config, str) or len(config) > MAX_MODEL_JSON:
            raise TypeError("to_json() did not give a model configuration")
        return config


def main():
    requests, answers = _take_protocol_streams()
    worker = Worker()
    handlers = {"run_cell": worker.run_cell, "call": worker.call}
    for line in requests:
        request = json.loads(line)
        try:
            answer = handlers[request["op"]](request)
        except BaseException as exc:  # noqa: BLE001 - keep answering whatever happened
            answer = {"ok": False, "kind": "raised", "error": _describe(exc)}
        answer["id"] = request.get("id")
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
