"""The worker: runs a student's notebook code inside the sandbox and answers the grader's requests.

It is started as a plain script inside the sandbox, where the rest of this package is not
visible, so it imports nothing from it. It speaks JSON lines over two private file descriptors;
the student's code sees stdin, stdout and stderr pointing at /dev/null.

Nothing the worker says is trusted: the grader decodes every answer as plain data and judges it
itself. The worker only runs code and converts what it returns.

Requests (one JSON object a line) and answers (each begins with its request's id, and on a line of
its own: a newline goes before it, so that a line the student's code left unfinished cannot spoil it):
  {"op": "run_cell", "source": str, "seconds": float, "cell": int (its number in the notebook)}
      -> {"id": N, "kind": "done"} | {"id": N, "kind": "raised" | "timeout", "error": ERROR}
  {"op": "call", "function": str, "args": [...], "kwargs": {...}, "returns": "array" | "arrays" | "model",
   "seconds": float}
      -> {"id": N, "kind": "done", "value": <encoded>, "args_after": [...]}
     ("arrays": a function that returns a tuple or list of arrays; its value is a list of encoded arrays)
       | {"id": N, "kind": "missing" | "not_implemented" | "raised" | "timeout" | "bad_return", "error": ERROR}
  ERROR = {"text": what happened, for people, "exception": the exception's type name or null,
           "message": its text, "cell": int or null, "line": int or null, "name": a NameError's name or null}
Arrays travel as {"ndarray": base64 of little-endian float64, "shape": [...], "dtype": str}.
When it is ready, before any request, the worker says {"id": 0, "ready": true, "confined": report}.
The grader's reading of these is channel.parse_answer; what happened to the worker (it died, hung)
is never said by it, the grader sees it.

The functions this script relies on are bound when it starts, before any student code runs, so
that a cell which monkeypatches json, signal or numpy changes only what the student's own code
sees (the grader judges the numbers anyway). Started as root (of bwrap's private user namespace, or
of the machine without bubblewrap), the worker becomes the uid the sandbox names before it reads a
request. Then, when the sandbox passes an allow-list (BN_AUTOGRADER_CONFINE, JSON), it confines
itself with confine.py, loaded by path from its own folder: Landlock and seccomp, before NumPy
starts a thread and before any student code; if that fails it exits with status 71 and never runs
student code. Its ready answer reports what was applied ("confined"). Where it is alone with its
processes (bwrap's PID namespace, or a uid of its own) it also ends every process the student's
code left running when a request is done. A process the student forks never answers: only the
worker's own process writes to the grader.
"""

import base64
import builtins
import importlib.util
import math
import os
import re
import sys
import time
import traceback
import types
from json import dumps, loads
from signal import ITIMER_REAL, SIGALRM, SIGKILL, setitimer
from signal import signal as set_signal_handler

MAX_ELEMENTS = 300_000          # numbers in one answer (2.4 MB of float64): far above what the checks' inputs give
MAX_PARTS = 8                   # arrays in a tuple answer: (dx, dgamma, dbeta) is three
MAX_MODEL_JSON = 4_000_000


class CellTimeout(BaseException):
    """Raised by the alarm; a BaseException so that a student's ``except Exception`` does not swallow it."""


def _alarm(signum, frame):
    raise CellTimeout()


CONFINE_FAILED = 71       # process.CONFINE_FAILED_EXIT: the grader reports the sandbox unavailable


def _load_confine():
    """confine.py from this script's own folder, by path (the package is not visible here)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "confine.py")
    spec = importlib.util.spec_from_file_location("_bn_autograder_confine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fail(why: str):
    """Say why on stderr (the grader's, until the protocol takes the streams over) and stop."""
    os.write(2, f"the worker could not confine itself: {why}\n".encode("utf-8", "replace"))
    os._exit(CONFINE_FAILED)


def _drop_privileges(confine):
    """Started as root (of bwrap's private user namespace, so that bwrap could mount for it, or of
    the machine), the worker becomes the uid the sandbox names (its gid the same number) before it
    reads a request, or does not run. Asked to, it keeps the right to read past permissions (its
    Python lives where the uid may not go), and Landlock then decides what it reads."""
    uid = os.environ.pop("BN_AUTOGRADER_UID", None)
    keep_read_search = os.environ.pop("BN_AUTOGRADER_KEEP_READ_SEARCH", "") == "1"
    if uid is None or os.getuid() != 0:
        return
    if keep_read_search:
        try:
            confine.drop_privileges(int(uid), int(uid), keep_read_search=True)
        except BaseException as exc:  # noqa: BLE001
            _fail(f"{type(exc).__name__}: {exc}")
    else:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
    if os.getuid() == 0 or os.geteuid() == 0:
        os._exit(70)


def _die_with_the_grader():
    """Without bubblewrap (whose --die-with-parent does it), the worker is killed when the grader
    process that started it dies, even by SIGKILL. Set after privileges are dropped, which clears it."""
    parent = os.environ.pop("BN_AUTOGRADER_PARENT", None)
    if parent is None:
        return
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(SIGKILL), 0, 0, 0)     # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):
        os._exit(0)          # it died before the signal was asked for


def _confine(confine, rules):
    """Landlock + seccomp to the allow-list the sandbox gave; the report of what was applied."""
    try:
        return confine.confine(rules["read_only"], rules["read_write"], list_only=rules.get("list_only", ()))
    except BaseException as exc:  # noqa: BLE001 - never run student code unconfined
        _fail(f"{type(exc).__name__}: {exc}")


def _raise_threads():
    """A worker forked from the zygote: NumPy's and SciPy's BLAS pools were loaded there with one
    thread (a fork is safe only from one); now that this worker is confined (new threads inherit
    Landlock and seccomp), they get its share, as a fresh worker's get from its environment at
    import. Without threadpoolctl they stay at one thread: slower, never unsafe."""
    wanted = os.environ.pop("BN_AUTOGRADER_RAISE_THREADS", None)
    if wanted is None or int(wanted) <= 1:
        return
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(wanted))
    except Exception:  # noqa: BLE001
        pass


def _take_protocol_streams():
    """Move the protocol to private descriptors and point 0, 1, 2 at /dev/null."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdin = open(0, "r", closefd=False)             # on 0, 1 and 2: every other descriptor is closed
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
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


def _describe(exc: BaseException, prefix: str = "") -> dict:
    """An exception as the protocol's ERROR: its type, message and where in the notebook it was raised."""
    cell = line = None
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell ")]
        if frames:
            cell, line = int(frames[-1].filename[6:-1]), frames[-1].lineno
    except BaseException:  # noqa: BLE001 - a traceback the student's code tampered with
        pass
    kind = "TimeoutError" if isinstance(exc, CellTimeout) else type(exc).__name__
    try:
        message = "time limit reached" if isinstance(exc, CellTimeout) else str(exc)
    except BaseException:  # noqa: BLE001 - a student's exception whose __str__ fails
        message = "(its message could not be printed)"
    if not isinstance(message, str):
        message = "(its message could not be printed)"
    message = message[:500] + "..." if len(message) > 500 else message
    name = getattr(exc, "name", None) if isinstance(exc, NameError) else None
    where = f" (cell {cell}, line {line})" if cell is not None else ""
    return {"text": f"{prefix}{kind}: {message}{where}", "exception": str(kind)[:100], "message": message,
            "cell": cell, "line": line, "name": name if isinstance(name, str) else None}


def _failed(kind: str, text: str) -> dict:
    """An answer for a failure the worker describes itself (no exception of the student's)."""
    return {"kind": kind, "error": {"text": text, "exception": None, "message": text, "cell": None, "line": None,
                                    "name": None}}


def _end_strays():
    """Inside bwrap's PID namespace every other process the worker may signal is the student's
    (bwrap's init is exempt from kill(-1)): end them with the request that started them, so that
    a fork bomb or a forgotten child cannot keep using the CPU, and reap those that were ours."""
    try:
        os.kill(-1, SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.002)


def _limited(seconds, fn, *args, **kwargs):
    """The soft time limit. Student code can block or ignore SIGALRM; the grader's own deadline
    (it kills the worker) is what really holds."""
    set_signal_handler(SIGALRM, _alarm)
    setitimer(ITIMER_REAL, max(float(seconds), 0.001))
    try:
        return fn(*args, **kwargs)
    finally:
        setitimer(ITIMER_REAL, 0)


class _NumPy:
    """The few NumPy names the worker uses, bound before student code can replace them."""

    def __init__(self):
        import numpy
        self.ndarray, self.asarray, self.frombuffer = numpy.ndarray, numpy.asarray, numpy.frombuffer


def _is_ndarray(value, np) -> bool:
    # type(), not isinstance(): an object can claim any class through a __class__ property.
    return issubclass(type(value), np.ndarray)


def encode_array(value, np, room=MAX_ELEMENTS):
    """A returned value as float64 numbers. The size is checked against the ``room`` left in the
    answer before anything is copied (a broadcast view can claim 10**12 elements), and the dtype
    reported is that of a real ndarray, never an attribute the value supplies."""
    array = np.asarray(value)      # an ndarray subclass becomes a plain view of its data
    if array.size > room:
        raise ValueError(f"returned {array.size:,} numbers, more than the {MAX_ELEMENTS:,} allowed")
    data = array.astype("<f8")
    dtype = str(array.dtype) if _is_ndarray(value, np) else type(value).__name__
    return {"ndarray": base64.b64encode(data.tobytes()).decode("ascii"),
            "shape": list(data.shape), "dtype": dtype[:40]}


def encode_arrays(value, np):
    """A returned tuple or list of arrays, each as encode_array, with at most MAX_ELEMENTS numbers in
    all; every size is checked before anything is copied."""
    if not issubclass(type(value), (tuple, list)):
        raise TypeError("None is not an answer; return a tuple of arrays" if value is None
                        else f"a {type(value).__name__}, not a tuple of arrays")
    parts = list(value)
    if len(parts) > MAX_PARTS:
        raise ValueError(f"returned {len(parts)} values, more than the {MAX_PARTS} allowed")
    arrays = [np.asarray(part) for part in parts]
    total = sum(array.size for array in arrays)
    if total > MAX_ELEMENTS:
        raise ValueError(f"returned {total:,} numbers, more than the {MAX_ELEMENTS:,} allowed")
    return [encode_array(part, np) for part in parts]


def decode_argument(value, np):
    if isinstance(value, dict) and "ndarray" in value:
        data = base64.b64decode(value["ndarray"])
        array = np.frombuffer(data, dtype="<f8").reshape(value["shape"]).copy()
        return array.astype("<i8") if value.get("as") == "int64" else array
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
        self.np = _NumPy()

    def run_cell(self, request):
        self.cells_run += 1
        try:
            code = compile(python_source(request["source"]), f"<cell {request.get('cell', self.cells_run)}>", "exec")
            _limited(request["seconds"], exec, code, self.namespace)
        except CellTimeout as exc:
            return {"kind": "timeout", "error": _describe(exc)}
        except BaseException as exc:  # noqa: BLE001 - anything the student's code does is a result
            return {"kind": "raised", "error": _describe(exc)}
        return {"kind": "done"}

    def call(self, request):
        np = self.np
        name = request["function"]
        function = self.namespace.get(name)
        if not callable(function):
            return _failed("missing", f"{name} is not defined in the notebook")
        args = [decode_argument(a, np) for a in request.get("args", [])]
        kwargs = {k: decode_argument(v, np) for k, v in request.get("kwargs", {}).items()}
        try:
            value = _limited(request["seconds"], function, *args, **kwargs)
        except NotImplementedError:
            return _failed("not_implemented", f"{name} is not implemented yet (it still raises NotImplementedError)")
        except CellTimeout:
            return _failed("timeout", f"{name} did not return within {request['seconds']:.0f} s")
        except BaseException as exc:  # noqa: BLE001
            return {"kind": "raised", "error": _describe(exc, f"{name} raised ")}
        try:
            encoded = _limited(request["seconds"], self.encode, value, request["returns"], np)
        except BaseException as exc:  # noqa: BLE001
            return {"kind": "bad_return", "error": _describe(exc, f"{name} returned something the grader cannot use: ")}
        try:        # the arguments share the answer's MAX_ELEMENTS with the value
            parts = encoded if isinstance(encoded, list) else [encoded] if isinstance(encoded, dict) else []
            room = MAX_ELEMENTS - sum(math.prod(part["shape"]) for part in parts)
            after = []
            for a in args:
                after.append(encode_array(a, np, room) if _is_ndarray(a, np) else None)
                room -= math.prod(after[-1]["shape"]) if after[-1] else 0
        except BaseException as exc:  # noqa: BLE001 - e.g. an argument resized in place past the cap
            return {"kind": "bad_return", "error": _describe(exc, f"{name} left its arguments unusable: ")}
        return {"kind": "done", "value": encoded, "args_after": after}

    @staticmethod
    def encode(value, returns, np):
        if returns == "array":
            return encode_array(value, np)
        if returns == "arrays":
            return encode_arrays(value, np)
        to_json = getattr(value, "to_json", None)
        if not callable(to_json):
            raise TypeError(f"a {type(value).__name__}, not a keras.Model")
        config = to_json()
        if not isinstance(config, str) or len(config) > MAX_MODEL_JSON:
            raise TypeError("to_json() did not give a model configuration")
        return config


class _KerasWithoutTensorFlow:
    """With Keras' NumPy backend (the sandbox sets KERAS_BACKEND) the worker builds models without
    TensorFlow, but keras.utils.set_random_seed, called by the notebook's set-up cell, imports
    TensorFlow only to seed it, because it is installed: that import alone costs more than the rest
    of the worker's start. This import hook lets Keras load as usual and then tells it TensorFlow is
    not there, unless something imported it already. A student's own ``import tensorflow`` still
    works; only Keras' seeding of it is left out, and with the NumPy backend nothing the checks ask
    for draws from TensorFlow's generator. Nothing is imported before the notebook asks for it."""

    MODULE = "keras.src.utils.module_utils"     # holds Keras' lazy handle on TensorFlow

    def find_spec(self, name, path=None, target=None):
        if name != self.MODULE:
            return None
        sys.meta_path.remove(self)               # once: the other finders find the real module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            tensorflow = getattr(module, "tensorflow", None)
            if "tensorflow" not in sys.modules and hasattr(tensorflow, "_available"):
                tensorflow._available = False
        spec.loader.exec_module = exec_module
        return spec

    @classmethod
    def install(cls):
        if os.environ.get("KERAS_BACKEND") == "numpy":
            sys.meta_path.insert(0, cls())


def _answer(answers, request_id, answer: dict):
    """One answer: its id first (the grader matches it before parsing anything), on a line of its own."""
    rest = dumps(answer)
    answers.write('\n{"id": %d, ' % request_id + rest[1:] + "\n")
    answers.flush()


def _close_inherited(keep):
    """Close every descriptor but the protocol's before any student code runs (bwrap's user
    namespace, anything the grader's process had open)."""
    try:
        names = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        names = list(range(3, 1024))
    for fd in names:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def main():
    # Read before any student code can change the environment; only the sandbox sets it, and only
    # when the worker has its own PID namespace (elsewhere kill(-1) would reach the whole machine).
    private_pids = os.environ.pop("BN_AUTOGRADER_PRIVATE_PIDS", "") == "1" and os.getpid() != 1
    rules = os.environ.pop("BN_AUTOGRADER_CONFINE", None)
    confine = None
    if rules is not None or os.environ.get("BN_AUTOGRADER_KEEP_READ_SEARCH") == "1":
        try:
            confine = _load_confine()
        except BaseException as exc:  # noqa: BLE001
            _fail(f"confine.py could not be loaded: {type(exc).__name__}: {exc}")
    _drop_privileges(confine)
    _die_with_the_grader()
    report = None if rules is None else _confine(confine, loads(rules))
    _raise_threads()
    requests, answers = _take_protocol_streams()
    _KerasWithoutTensorFlow.install()
    worker = Worker()
    owner = os.getpid()
    handlers = {"run_cell": worker.run_cell, "call": worker.call}
    _close_inherited({requests.fileno(), answers.fileno()})
    _answer(answers, 0, {"ready": True, "confined": report})
    for line in requests:
        request = loads(line)
        try:
            answer = handlers[request["op"]](request)
        except BaseException as exc:  # noqa: BLE001 - keep answering whatever happened
            answer = {"kind": "raised", "error": _describe(exc)}
        if os.getpid() != owner:
            os._exit(0)   # a process the student forked came back here: only the worker answers
        if private_pids:
            _end_strays()
        _answer(answers, int(request.get("id", -1)), answer)


if __name__ == "__main__":
    main()
