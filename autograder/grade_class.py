"""Grade a whole class: ``python -m autograder grade-class batchnorm --jobs N [--course-dir DIR] [--force]``.

Every score comes from the isolated grader (``autograder.grade.grade_notebook``), run in a pool of N
long-lived grader processes; nothing a student wrote runs in this process or in a Jupyter kernel.

Input (an nbgrader course folder, default the current directory):

* ``submitted/<student>/batchnorm/*.ipynb`` -- what ``nbgrader collect`` / ``zip_collect`` produce.
  A renamed notebook (``batchnorm-Copy1.ipynb``) is graded; with several notebooks,
  ``batchnorm.ipynb`` wins, else the newest, and the row's message says which was graded.
  nbformat v3 notebooks are converted to v4 and every output is removed before grading (the grader
  only needs the code), into a temporary copy; the submitted file is never changed.
* ``downloaded/batchnorm/archive/`` -- LMS downloads in ``nbgrader zip_collect``'s layout. When it
  holds files, zips are extracted safely (no absolute or ``..`` paths, no links, size and member
  caps) into ``downloaded/batchnorm/extracted/<zip name>/`` and every notebook is copied to
  ``submitted/<student_id>/batchnorm/<file_id>.ipynb``. The student id and file id come from
  ``c.FileNameCollectorPlugin.named_regexp`` in the course's nbgrader_config.py (nbgrader's
  documented pattern ``.*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)`` when
  unset), else from the zip's name (one zip per student), else from the file name. Alternatively
  run ``nbgrader zip_collect batchnorm`` first and pass ``--no-collect``.

Output, each written atomically as soon as that submission is graded:

* ``autograded/<student>/batchnorm/results.json`` -- the grader's results document;
  ``grade_class.json`` beside it records the submission's sha256 and the grader's hash, so a rerun
  skips unchanged submissions (``--force`` regrades all; changed checks regrade everything).
* ``feedback/<student>/batchnorm/batchnorm.html`` -- per-exercise feedback (autograder/feedback.py).
* ``grades.csv`` (``--csv``): student, one column per exercise, total, max_total, status, message.

A submission that cannot be graded (no notebook, corrupt file, bad zip, a grader process that
crashed or ran past ``--timeout``) gets status ``error``, 0 points and the reason; the class goes on.
Exit status: 0 when every submission got a result (including errors), 1 when results could not be
written, 2 for a usage error, 130 when interrupted (everything finished so far is kept).

Relation to nbgrader: ``nbgrader autograde batchnorm`` is the gradebook path (see
autograder/nbgrader_bridge.py); it records the same isolated grader's scores per test cell. The two
share ``autograded/<student>/batchnorm/``: nbgrader skips a student whose folder exists, so after
this command use ``nbgrader autograde batchnorm --force``. Both write ``feedback/.../batchnorm.html``
(the last one run wins), and ``nbgrader export`` also defaults to ``grades.csv``.
"""

import argparse
import csv
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import wait as wait_connections
from pathlib import Path, PurePosixPath

from . import feedback, results
from .exercises import ASSIGNMENT_ID, EXERCISE_IDS, EXERCISES, NOTEBOOK_NAME

# "module:function" of the grader each pool process calls (tests point it at a fake).
GRADER = "autograder.grade:grade_notebook"

# nbgrader's documented example for zip_collect's FileNameCollectorPlugin (it ships no default).
DEFAULT_COLLECT_REGEXP = r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"

MAX_NOTEBOOK_BYTES = 256 * 2**20      # a notebook larger than this is not read
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_MEMBER_BYTES = 512 * 2**20    # per extracted notebook
MAX_ZIP_TOTAL_BYTES = 2 * 2**30       # per archive, all members
MAX_ZIP_DEPTH = 2                     # zips inside zips are opened this deep
BIG_NOTEBOOK_NOTE = 5 * 2**20         # mention stripped outputs above this size

DEFAULT_TIMEOUT = 900.0               # seconds one submission may take in a grader process
MAX_TASKS_PER_WORKER = 40             # a grader process is replaced after this many submissions

SIDECAR = "grade_class.json"
FEEDBACK_NAME = "batchnorm.html"
CSV_COLUMNS = ("student",) + EXERCISE_IDS + ("total", "max_total", "status", "message")

# Modules that present results but do not change a score: editing them does not regrade.
_NOT_GRADER = {"grade_class.py", "feedback.py", "nbgrader_bridge.py", "demo.py", "__main__.py", "students.py"}


# --- small helpers ---------------------------------------------------------------------------------

def _fmt(x) -> str:
    return f"{float(x):g}"


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_env(jobs: int) -> dict:
    """Thread limits for each grader process, so ``jobs`` processes share the cores instead of each
    starting one thread per core."""
    per = str(max(1, cpu_count() // max(1, jobs)))
    return {"BN_AUTOGRADER_THREADS": per, "OMP_NUM_THREADS": per, "TF_NUM_INTRAOP_THREADS": per, "TF_NUM_INTEROP_THREADS": "1",
            "OPENBLAS_NUM_THREADS": per, "MKL_NUM_THREADS": per,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


def grader_hash(package=None) -> str:
    """A hash of everything that decides a score: the grader's modules, the hidden checks, the
    package versions. A result graded under another hash is graded again."""
    package = Path(package) if package else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if not path.is_file() or "__pycache__" in rel or path.suffix in (".pyc", ".pyo"):
            continue
        if rel in _NOT_GRADER or (path.parent == package and path.suffix != ".py"):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(results.versions(), sort_keys=True).encode())
    return h.hexdigest()[:20]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_CATALOGUE = None


def _catalogue() -> list:
    """Every check row (cached per process); by exercise when the grader cannot list its checks."""
    global _CATALOGUE
    if _CATALOGUE is None:
        try:
            _CATALOGUE = [dict(row) for row in results.catalogue()]
        except Exception:
            _CATALOGUE = [{"id": e.id, "exercise": e.id, "points": 0.0, "max_points": e.points,
                           "passed": False, "message": ""} for e in EXERCISES]
    return _CATALOGUE


def error_result(message: str, timings=None) -> dict:
    """``results.error_result`` with the check catalogue cached, and a fallback when it is missing."""
    rows = [dict(row, points=0.0, passed=False, message=message) for row in _catalogue()]
    return results.summarise(rows, error=message, timings=timings)


def _valid_result(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("checks"), list)
            and doc.get("status") in ("graded", "error") and "total" in doc and "max_total" in doc)


def safe_student_id(name: str) -> str:
    """``name`` as one safe path component (a student id comes from file names students chose)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name.strip()).lstrip(".")
    return cleaned[:100] or "unknown"


# --- zip downloads (nbgrader zip_collect's layout) --------------------------------------------------

class BadArchive(Exception):
    pass


def _safe_parts(name: str):
    """The path parts of a zip member, or None when the name could escape the folder."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("..", ".", "") for p in parts):
        return None
    return parts


def _extract_zip(source, dest: Path, depth: int = 1, budget=None) -> list:
    """Extract the notebooks (and, ``MAX_ZIP_DEPTH`` deep, zips in zips) of ``source`` under ``dest``.

    Refuses absolute or ``..`` member names and links; stops at the size and member caps.
    Returns the extracted notebook paths. Raises BadArchive for a zip that cannot be read.
    """
    budget = budget if budget is not None else [MAX_ZIP_TOTAL_BYTES]
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadArchive(f"not a readable zip file ({e})") from None
    found = []
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise BadArchive(f"{len(members)} files in the archive, more than the limit of {MAX_ZIP_MEMBERS}")
        for info in members:
            if info.is_dir():
                continue
            parts = _safe_parts(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if parts is None or mode == stat.S_IFLNK:
                continue                                    # path traversal or a link: never written
            if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
                continue
            lower = parts[-1].lower()
            is_zip = lower.endswith(".zip")
            if not (lower.endswith(".ipynb") or (is_zip and depth < MAX_ZIP_DEPTH)):
                continue
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise BadArchive(f"{info.filename} is larger than {MAX_ZIP_MEMBER_BYTES // 2**20} MB")
            try:
                with archive.open(info) as src:
                    data = io.BytesIO()
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        data.write(block)
                        budget[0] -= len(block)
                        if data.tell() > MAX_ZIP_MEMBER_BYTES or budget[0] < 0:
                            raise BadArchive("the archive unpacks to more than the size limit")
            except BadArchive:
                raise
            except Exception as e:   # CRC errors, encrypted members, unknown compression
                raise BadArchive(f"could not extract {info.filename}: {type(e).__name__}: {e}") from None
            target = dest.joinpath(*parts)
            if is_zip:
                inner = target.with_suffix("")
                data.seek(0)
                found += _extract_zip(data, inner, depth + 1, budget)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.getvalue())
            found.append(target)
    return found


def configured_regexp(course: Path) -> str:
    """``c.FileNameCollectorPlugin.named_regexp`` from the course's nbgrader_config.py, if set."""
    config_file = course / "nbgrader_config.py"
    if config_file.is_file():
        try:
            from traitlets.config.loader import PyFileConfigLoader
            config = PyFileConfigLoader(config_file.name, path=str(course)).load_config()
            if "FileNameCollectorPlugin" in config and "named_regexp" in config.FileNameCollectorPlugin:
                value = config.FileNameCollectorPlugin.named_regexp
                if isinstance(value, str) and value:
                    return value
        except Exception:
            pass
    return DEFAULT_COLLECT_REGEXP


def _match(pattern, path) -> dict:
    if path is None:
        return {}
    m = pattern.match(str(path))
    return m.groupdict() if m and m.groupdict().get("student_id") else {}


def _copy_if_changed(src: Path, dest: Path) -> None:
    data = src.read_bytes()
    if dest.is_file() and dest.read_bytes() == data:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect_archives(course: Path, assignment: str = ASSIGNMENT_ID, regexp: str | None = None) -> dict:
    """Extract ``downloaded/<assignment>/archive`` into ``extracted/`` and copy each notebook into
    ``submitted/<student>/<assignment>/``. Returns {student: reason} for archives that could not be used."""
    base = course / "downloaded" / assignment
    archive_dir, extracted_dir = base / "archive", base / "extracted"
    if not archive_dir.is_dir():
        return {}
    files = sorted(p for p in archive_dir.rglob("*") if p.is_file() and not p.is_symlink()
                   and not any(part.startswith(".") for part in p.relative_to(archive_dir).parts))
    if not files:
        return {}
    pattern = re.compile(regexp or configured_regexp(course))
    if extracted_dir.exists():
        shutil.rmtree(extracted_dir)
    extracted_dir.mkdir(parents=True)

    problems = {}
    notebooks = []                                  # (extracted path, the zip it came from or None)
    for path in files:
        rel = path.relative_to(archive_dir)
        if path.suffix.lower() in (".zip",):
            dest = extracted_dir / rel.parent / path.stem
            try:
                found = _extract_zip(path, dest)
            except BadArchive as e:
                student = safe_student_id(_match(pattern, path).get("student_id") or path.stem)
                problems[student] = f"the archive {rel} could not be used: {e}"
                continue
            if not found:
                student = safe_student_id(_match(pattern, path).get("student_id") or path.stem)
                problems.setdefault(student, f"the archive {rel} holds no notebook (.ipynb)")
            notebooks += [(nb, path) for nb in found]
        elif path.suffix.lower() == ".ipynb":
            dest = extracted_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            notebooks.append((dest, None))

    chosen = {}                                     # (student, notebook name) -> (timestamp, path)
    for nb, origin in notebooks:
        info = _match(pattern, nb) or _match(pattern, origin)
        student = info.get("student_id") or (origin.stem if origin is not None else nb.stem)
        student = safe_student_id(student)
        file_id = Path(str(info.get("file_id") or nb.name).replace("\\", "/")).name
        name = (Path(file_id).stem if file_id.lower().endswith(".ipynb") else file_id) + ".ipynb"
        name = safe_student_id(name) if name != ".ipynb" else nb.name
        timestamp = info.get("timestamp") or ""
        key = (student, name)
        if key not in chosen or timestamp >= chosen[key][0]:
            chosen[key] = (timestamp, nb)
    for (student, name), (timestamp, nb) in sorted(chosen.items()):
        folder = course / "submitted" / student / assignment
        _copy_if_changed(nb, folder / name)
        if timestamp:
            stamp = folder / "timestamp.txt"
            if not stamp.is_file() or stamp.read_text().strip() != timestamp:
                feedback.write_text_atomic(timestamp + "\n", stamp)
    return problems


# --- finding each student's notebook ---------------------------------------------------------------

@dataclass
class Submission:
    student: str
    notebook: Path | None = None
    notes: list = field(default_factory=list)
    error: str | None = None


def _visible(path: Path, folder: Path) -> bool:
    rel = path.relative_to(folder).parts
    return (path.is_file() and not path.is_symlink() and path.suffix.lower() == ".ipynb"
            and not any(p.startswith(".") or p == ".ipynb_checkpoints" for p in rel))


def choose_notebook(folder: Path, assignment: str = ASSIGNMENT_ID):
    """(notebook, notes, error) for one student's ``submitted/<student>/<assignment>/`` folder."""
    where = f"submitted/{folder.parent.name}/{assignment}/"
    notes = []
    candidates = sorted(p for p in folder.iterdir() if _visible(p, folder))
    if not candidates:
        candidates = sorted(p for p in folder.rglob("*.ipynb") if _visible(p, folder))
        if candidates:
            notes.append("the notebook was in a subfolder")
    if not candidates:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        return None, [], (f"no notebook (.ipynb) in {where}"
                          + (f" (found: {shown})" if others else " (the folder is empty)"))
    rel = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    if len(candidates) == 1:
        chosen = candidates[0]
        if chosen.name != NOTEBOOK_NAME:
            notes.append(f"graded {rel(chosen)} (not named {NOTEBOOK_NAME})")
    else:
        exact = sorted((p for p in candidates if p.name == NOTEBOOK_NAME), key=lambda p: len(p.parts))
        if exact:
            chosen = exact[0]
            why = f"graded {rel(chosen)}"
        else:
            chosen = max(candidates, key=lambda p: (p.stat().st_mtime, p.name))
            why = f"none is named {NOTEBOOK_NAME}; graded the newest, {rel(chosen)}"
        ignored = ", ".join(rel(p) for p in candidates if p != chosen)
        notes.append(f"{len(candidates)} notebooks handed in; {why} (not graded: {ignored})")
    return chosen, notes, None


def discover(course: Path, assignment: str = ASSIGNMENT_ID, problems: dict | None = None) -> list:
    """One Submission per student folder in ``submitted/`` that has an ``<assignment>/`` folder,
    plus one per unusable archive whose student has nothing else."""
    found = {}
    submitted = course / "submitted"
    if submitted.is_dir():
        for student_dir in sorted(submitted.iterdir()):
            folder = student_dir / assignment
            if student_dir.name.startswith(".") or not folder.is_dir():
                continue
            notebook, notes, error = choose_notebook(folder, assignment)
            found[student_dir.name] = Submission(student_dir.name, notebook, notes, error)
    for student, reason in (problems or {}).items():
        if student in found and found[student].notebook is not None:
            found[student].notes.append(reason)
        else:
            found[student] = Submission(student, None, [], reason)
    return [found[s] for s in sorted(found)]


# --- preparing a notebook for the grader (runs in the grader processes) -----------------------------

class NotebookUnreadable(Exception):
    pass


def prepare_notebook(source: Path, dest: Path) -> list:
    """Read ``source`` (any nbformat version), convert to v4, drop outputs and attachments, write
    ``dest``. Returns notes for the row's message; raises NotebookUnreadable with the reason."""
    import nbformat

    size = source.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookUnreadable(f"the notebook is {size / 2**20:.0f} MB, more than the "
                                 f"{MAX_NOTEBOOK_BYTES // 2**20} MB that is read")
    raw = source.read_bytes()
    if not raw.strip():
        raise NotebookUnreadable("the notebook file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotebookUnreadable("the file is not UTF-8 text; is it really a .ipynb notebook?") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookUnreadable(f"the notebook is not valid JSON (truncated or corrupted?): {e}") from None
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise NotebookUnreadable("the file is JSON but not a Jupyter notebook")
    version = data.get("nbformat")
    del raw, text
    cells = list(data.get("cells") or []) if isinstance(data.get("cells"), list) else []
    for sheet in data.get("worksheets") or []:                       # nbformat v3
        if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list):
            cells += sheet["cells"]
    for cell in cells:               # outputs go before nbformat parses it again: huge ones cost nothing
        if isinstance(cell, dict):
            if "outputs" in cell:
                cell["outputs"] = []
            cell.pop("attachments", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as e:
        raise NotebookUnreadable(f"the notebook could not be read: {type(e).__name__}: {e}") from None
    del data
    notes = []
    if version != 4:
        notes.append(f"converted from nbformat v{version} to v4")
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.pop("attachments", None)
    if size > BIG_NOTEBOOK_NOTE:
        notes.append(f"outputs removed before grading (the notebook was {size / 2**20:.0f} MB)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
    return notes


# --- the grader processes --------------------------------------------------------------------------

def _load_grader(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "grade_notebook")


def _accepts(function, name: str) -> bool:
    import inspect
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def grade_task(task: dict, grader, load_error: str | None, cache_dir) -> dict:
    """Prepare and grade one submission; never raises (an error becomes an error result)."""
    start = time.perf_counter()
    final = True
    notes = []
    with tempfile.TemporaryDirectory(prefix="autograder-class-") as tmp:
        prepared = Path(tmp) / NOTEBOOK_NAME
        try:
            notes = prepare_notebook(Path(task["path"]), prepared)
        except NotebookUnreadable as e:
            result = error_result(str(e))
        except OSError as e:
            result, final = error_result(f"the notebook could not be read: {e}"), False
        else:
            prepare_seconds = time.perf_counter() - start
            if grader is None:
                result, final = error_result(f"the grader could not be loaded: {load_error}"), False
            else:
                try:
                    kwargs = {"cache_dir": Path(cache_dir) if cache_dir else None}
                    if task.get("hide") and _accepts(grader, "hide"):
                        kwargs["hide"] = tuple(task["hide"])
                    result = grader(prepared, **kwargs)
                    if not _valid_result(result):
                        raise ValueError(f"the grader returned {type(result).__name__}, not a results document")
                    json.dumps(result, allow_nan=False)
                except Exception as e:
                    result, final = error_result(f"the grader failed: {type(e).__name__}: {e}"), False
            result.setdefault("timings", {}).setdefault("prepare", round(prepare_seconds, 3))
    result.setdefault("timings", {})["class_wall"] = round(time.perf_counter() - start, 3)
    return {"student": task["student"], "result": result, "notes": notes, "final": final}


def _worker_main(conn, grader_spec: str, env: dict, cache_dir, log_path) -> None:
    """A long-lived grader process: load the grader once, say "ready", then grade what the parent sends."""
    try:
        os.setpgrp()                 # so a timeout can end this process and anything it started
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    os.environ.update(env)
    if log_path:
        try:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(fd, 1), os.dup2(fd, 2)
            os.close(fd)
        except OSError:
            pass
    grader, load_error = None, None
    try:
        grader = _load_grader(grader_spec)
    except BaseException as e:       # noqa: BLE001 - reported per submission instead
        load_error = f"{type(e).__name__}: {e}"
    try:                             # what every submission needs, loaded before the clock starts
        import nbformat  # noqa: F401
        results.versions()
    except Exception:                # noqa: BLE001
        pass
    try:
        conn.send(("ready", load_error))
        while True:
            task = conn.recv()
            if task is None:
                break
            print(f"--- {task['student']}: {task['path']}", flush=True)
            conn.send(("done", grade_task(task, grader, load_error, cache_dir)))
    except (EOFError, OSError):
        pass


class _Worker:
    def __init__(self, ctx, args):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, *args), name="autograder-grader")
        self.proc.start()
        child.close()
        self.log = args[3]
        self.ready = False
        self.task = None
        self.started = time.monotonic()      # when it started, then when its current task did
        self.done = 0

    def send(self, task):
        self.task, self.started = task, time.monotonic()
        self.conn.send(task)

    def kill(self):
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError, OSError, ValueError, AttributeError):
                pass
        self.proc.join(10)
        self.conn.close()

    def stop(self):
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def _crash_reason(exitcode) -> str:
    how = (f"killed by signal {-exitcode}" + (" (out of memory?)" if exitcode == -9 else "")
           if isinstance(exitcode, int) and exitcode < 0 else f"exit code {exitcode}")
    return f"the grader process crashed while grading this submission ({how})"


STARTUP_TIMEOUT = 300.0      # seconds a grader process may take to load the grader
MAX_STARTUP_FAILURES = 3     # grader processes in a row that die before they are ready


def run_pool(tasks: list, *, jobs: int, on_result, timeout: float = DEFAULT_TIMEOUT,
             cache_dir=None, log_dir=None, max_tasks_per_worker: int = MAX_TASKS_PER_WORKER,
             note=None) -> None:
    """Grade ``tasks`` in ``jobs`` grader processes, calling ``on_result(outcome)`` as each finishes.

    Each process loads the grader once and says it is ready; ``timeout`` counts from when it is
    given a submission. A process that dies or runs past ``timeout`` is ended, that submission gets
    an error result, and a fresh process takes its place. When grader processes keep dying before
    they are ready, the remaining submissions get error results instead of waiting forever.
    """
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")   # never fork a process that may hold threads
    env = worker_env(jobs)
    pending = list(reversed(tasks))
    workers, serial, startup_failures = [], 0, 0

    def start():
        nonlocal serial
        serial += 1
        log = str(Path(log_dir) / f"grader-{serial}.log") if log_dir else None
        return _Worker(ctx, (GRADER, env, str(cache_dir) if cache_dir else None, log))

    def error(task, reason):
        on_result({"student": task["student"], "notes": [], "final": False, "result": error_result(reason)})

    def failed(worker, reason):
        task = worker.task
        worker.kill()
        workers.remove(worker)
        if note is not None:
            note(f"{task['student']}: {reason}" + (f"; see {worker.log}" if worker.log else ""))
        error(task, reason)

    def lost_before_ready(worker, reason):
        nonlocal startup_failures
        worker.kill()
        workers.remove(worker)
        startup_failures += 1
        if note is not None:
            note(f"a grader process {reason}" + (f"; see {worker.log}" if worker.log else ""))
        if startup_failures >= MAX_STARTUP_FAILURES and not any(w.ready for w in workers):
            while pending:
                error(pending.pop(), f"no grader process could be started ({reason})")

    try:
        while pending or any(w.task for w in workers):
            while pending and len(workers) < jobs:
                workers.append(start())
            for w in list(workers):
                if w.ready and w.task is None and pending:
                    task = pending.pop()
                    try:
                        w.send(task)
                    except (OSError, ValueError):     # it died while idle: someone else takes the task
                        pending.append(task)
                        w.task = None
                        lost_before_ready(w, "died while idle")
            ready = wait_connections([w.conn for w in workers] + [w.proc.sentinel for w in workers],
                                     timeout=1.0)
            for w in list(workers):
                if w.conn in ready or w.conn.poll():
                    try:
                        kind, payload = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        if w.task is not None:
                            failed(w, _crash_reason(w.proc.exitcode))
                        else:
                            lost_before_ready(w, f"exited before it was ready ({w.proc.exitcode})")
                        continue
                    if kind == "ready":
                        w.ready, startup_failures = True, 0
                        continue
                    w.task, w.done = None, w.done + 1
                    on_result(payload)
                    if w.done >= max_tasks_per_worker:
                        w.stop()
                        workers.remove(w)
                elif not w.proc.is_alive():
                    if w.task is not None:
                        failed(w, _crash_reason(w.proc.exitcode))
                    else:
                        lost_before_ready(w, f"exited before it was ready ({w.proc.exitcode})")
                elif w.task is not None and time.monotonic() - w.started > timeout:
                    failed(w, f"grading took longer than {timeout:g} s and was stopped")
                elif not w.ready and time.monotonic() - w.started > STARTUP_TIMEOUT:
                    lost_before_ready(w, f"took longer than {STARTUP_TIMEOUT:g} s to load the grader")
    finally:
        for w in workers:
            if w.task is None:
                w.stop()
            else:
                w.kill()


# --- writing results -------------------------------------------------------------------------------

def row_for(student: str, result: dict, message: str = "") -> dict:
    scores = results.exercise_scores(result) if result.get("checks") is not None else {}
    return {"student": student, "scores": {e: scores.get(e, 0.0) for e in EXERCISE_IDS},
            "total": float(result.get("total", 0.0)), "max_total": float(result.get("max_total", 0.0)),
            "status": result.get("status", "error"), "message": message}


def _message(notes, result) -> str:
    parts = list(notes)
    if result.get("status") == "error" and result.get("error"):
        parts.append(str(result["error"]))
    return "; ".join(parts)


def write_csv(rows: list, path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(rows, key=lambda r: r["student"]):
        writer.writerow([r["student"], *(_fmt(r["scores"][e]) for e in EXERCISE_IDS),
                         _fmt(r["total"]), _fmt(r["max_total"]), r["status"],
                         " ".join(str(r["message"]).split())])
    feedback.write_text_atomic(buf.getvalue(), path)


def format_table(rows: list) -> str:
    """The end-of-run score table: student, points per exercise, total, status."""
    maxima = {e.id: e.points for e in EXERCISES}
    headers = ["student", *(f"{e}/{_fmt(maxima[e])}" for e in EXERCISE_IDS), "total", "status"]
    body = [[r["student"], *(_fmt(r["scores"][e]) for e in EXERCISE_IDS),
             f"{_fmt(r['total'])}/{_fmt(r['max_total'])}", r["status"]]
            for r in sorted(rows, key=lambda r: r["student"])]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i in (0, len(cells) - 1) else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(headers), line(["-" * w for w in widths])] + [line(b) for b in body]
    return "\n".join(out)


class Progress:
    """A one-line progress bar on a terminal; one line per submission otherwise."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.errors = total, 0, 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def note(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, row: dict) -> None:
        self.done += 1
        self.errors += row["status"] == "error"
        elapsed = time.monotonic() - self.start
        result = f"{_fmt(row['total'])}/{_fmt(row['max_total'])}" + (" (error)" if row["status"] == "error" else "")
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            self.stream.write(f"\r\033[Kgrading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                              f"  errors {self.errors}  {elapsed:.0f}s  last: {row['student'][:24]} {result}")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {row['student']}: {result}  ({elapsed:.0f}s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ClassRun:
    rows: list
    graded: int = 0
    resumed: int = 0
    write_failures: list = field(default_factory=list)
    csv_path: Path | None = None
    seconds: float = 0.0


def _paths(course: Path, assignment: str, student: str):
    folder = course / "autograded" / student / assignment
    return folder / "results.json", folder / SIDECAR, course / "feedback" / student / assignment / FEEDBACK_NAME


def _resumable(course, assignment, sub: Submission, key: dict):
    results_path, sidecar_path, _ = _paths(course, assignment, sub.student)
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        stored = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if sidecar.get("key") != key or not sidecar.get("final") or not _valid_result(stored):
        return None
    return row_for(sub.student, stored, sidecar.get("message", ""))


def run(course_dir, *, assignment: str = ASSIGNMENT_ID, jobs: int = 2, force: bool = False,
        collect: bool = True, regexp: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        csv_path=None, cache_dir=None, progress_stream=None, on_row=None,
        max_tasks_per_worker: int = MAX_TASKS_PER_WORKER) -> ClassRun:
    """Grade every submission of ``assignment`` in ``course_dir``; see the module docstring."""
    global _CATALOGUE
    _CATALOGUE = None
    started = time.monotonic()
    course = Path(course_dir).resolve()
    csv_path = Path(csv_path) if csv_path else course / "grades.csv"
    log_dir = course / ".cache" / "autograder" / "logs"
    problems = collect_archives(course, assignment, regexp) if collect else {}
    submissions = discover(course, assignment, problems)
    outcome = ClassRun(rows=[], csv_path=csv_path)
    rows = {}
    progress = Progress(len(submissions), progress_stream)

    def record(sub_student, result, notes, key, final):
        message = _message(notes, result)
        results_path, sidecar_path, feedback_path = _paths(course, assignment, sub_student)
        try:
            try:
                results.write_json_atomic(result, results_path)
            except (ValueError, TypeError) as e:       # not JSON: a grader bug, not the student's
                result = error_result(f"the grader returned a result that is not valid JSON: {e}")
                message, final = _message(notes, result), False
                results.write_json_atomic(result, results_path)
            results.write_json_atomic({"student": sub_student, "key": key, "final": final,
                                       "message": message,
                                       "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                                      sidecar_path)
            feedback.write(result, feedback_path, student=sub_student, message="; ".join(notes))
        except OSError as e:
            outcome.write_failures.append(f"{sub_student}: {e}")
            progress.note(f"could not write the results of {sub_student}: {e}")
        row = row_for(sub_student, result, message)
        rows[sub_student] = row
        return row

    graded_hash = grader_hash()
    tasks, keys, notes_of = [], {}, {}
    for sub in submissions:
        if sub.error:
            record(sub.student, error_result(sub.error), sub.notes, None, True)
            continue
        key = {"submission_sha256": sha256_file(sub.notebook), "grader": graded_hash,
               "notebook": sub.notebook.name}
        keys[sub.student], notes_of[sub.student] = key, sub.notes
        row = None if force else _resumable(course, assignment, sub, key)
        if row is not None:
            rows[sub.student] = row
            outcome.resumed += 1
            continue
        tasks.append({"student": sub.student, "path": str(sub.notebook), "hide": [str(course)]})

    def on_result(done):
        student = done["student"]
        row = record(student, done["result"], notes_of.get(student, []) + done.get("notes", []),
                     keys.get(student), done.get("final", True))
        outcome.graded += 1
        try:
            write_csv(rows.values(), csv_path)
        except OSError as e:
            outcome.write_failures.append(f"{csv_path}: {e}")
        progress.update(row)
        if on_row is not None:
            on_row(row)

    try:
        if len(tasks) < len(submissions):
            progress.done = len(submissions) - len(tasks)
            progress.note(f"{outcome.resumed} unchanged submission(s) already graded, "
                          f"{len(submissions) - len(tasks) - outcome.resumed} could not be graded; "
                          f"grading {len(tasks)} (--force regrades all)")
        if tasks:
            run_pool(tasks, jobs=jobs, on_result=on_result, timeout=timeout, cache_dir=cache_dir,
                     log_dir=log_dir, max_tasks_per_worker=max_tasks_per_worker,
                     note=progress.note)
    finally:
        progress.close()
        outcome.rows = [rows[s] for s in sorted(rows)]
        outcome.seconds = time.monotonic() - started
        try:
            write_csv(outcome.rows, csv_path)
        except OSError as e:
            outcome.write_failures.append(f"{csv_path}: {e}")
    return outcome


# --- command line ----------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autograder grade-class",
        description="Grade every submitted notebook of an assignment with the isolated grader.")
    p.add_argument("assignment", help=f"the assignment id ({ASSIGNMENT_ID})")
    p.add_argument("--jobs", "-j", type=int, default=min(2, cpu_count()),
                   help="grader processes working in parallel (default: %(default)s)")
    p.add_argument("--course-dir", default=".", help="the nbgrader course folder (default: current directory)")
    p.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds one submission may take before it is stopped (default: %(default)g)")
    p.add_argument("--cache-dir", help="where the grader caches the training baseline "
                                       "(default: the grader's own, $BN_AUTOGRADER_CACHE or ~/.cache/bn-autograder)")
    p.add_argument("--csv", help="where to write the class CSV (default: COURSE_DIR/grades.csv)")
    p.add_argument("--no-collect", action="store_true",
                   help="do not extract downloaded/<assignment>/archive (e.g. after nbgrader zip_collect)")
    p.add_argument("--collect-regexp",
                   help="named regexp for student_id/file_id in downloaded file names "
                        "(default: c.FileNameCollectorPlugin.named_regexp, else nbgrader's documented example)")
    return p


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.assignment != ASSIGNMENT_ID:
        print(f"grade-class: unknown assignment {args.assignment!r}; this course has {ASSIGNMENT_ID!r}",
              file=sys.stderr)
        return 2
    if args.jobs < 1 or args.timeout <= 0:
        print("grade-class: --jobs and --timeout must be positive", file=sys.stderr)
        return 2
    if args.collect_regexp:
        try:
            if "student_id" not in re.compile(args.collect_regexp).groupindex:
                raise re.error("needs a (?P<student_id>...) group")
        except re.error as e:
            print(f"grade-class: bad --collect-regexp: {e}", file=sys.stderr)
            return 2
    course = Path(args.course_dir).resolve()
    archive = course / "downloaded" / args.assignment / "archive"
    if not course.is_dir():
        print(f"grade-class: no such course folder: {course}", file=sys.stderr)
        return 2
    if not (course / "submitted").is_dir() and not (archive.is_dir() and not args.no_collect):
        print(f"grade-class: nothing to grade: neither {course / 'submitted'} nor {archive} exists",
              file=sys.stderr)
        return 2
    try:
        outcome = run(course, assignment=args.assignment, jobs=args.jobs, force=args.force,
                      collect=not args.no_collect, regexp=args.collect_regexp, timeout=args.timeout,
                      csv_path=args.csv, cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        print("\ninterrupted: every result finished so far is written; run the same command again "
              "to grade the rest", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"grade-class: could not write results: {e}", file=sys.stderr)
        return 1
    if not outcome.rows:
        print(f"no submissions found in {course / 'submitted'}/<student>/{args.assignment}/")
        return 0
    print(format_table(outcome.rows))
    errors = sum(r["status"] == "error" for r in outcome.rows)
    print(f"\n{len(outcome.rows)} submissions ({outcome.graded} graded now, {outcome.resumed} unchanged, "
          f"{errors} with status error) in {outcome.seconds:.0f} s")
    print(f"grades:   {outcome.csv_path}")
    print(f"results:  {course / 'autograded'}/<student>/{args.assignment}/results.json")
    print(f"feedback: {course / 'feedback'}/<student>/{args.assignment}/{FEEDBACK_NAME}")
    if outcome.write_failures:
        print("could not write:\n  " + "\n  ".join(outcome.write_failures), file=sys.stderr)
        return 1
    return 0
