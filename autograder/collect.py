"""Collect: what students hand in -> one notebook per student, ready for the grader.

Three steps, each usable on its own:

* ``collect_archives`` -- LMS downloads in ``nbgrader zip_collect``'s layout. The files in
  ``downloaded/<assignment>/archive/`` are extracted safely (no absolute or ``..`` paths, no links,
  size and member caps) into ``downloaded/<assignment>/extracted/<zip name>/`` and every notebook is
  copied to ``submitted/<student_id>/<assignment>/<file_id>.ipynb``. The student id and file id come
  from ``c.FileNameCollectorPlugin.named_regexp`` in the course's nbgrader_config.py (nbgrader's
  documented pattern ``.*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)``
  when unset), else from the zip's name (one zip per student), else from the file name.
* ``discover`` -- one ``HandIn`` per ``submitted/<student>/<assignment>/`` folder: the notebook to
  grade (a renamed one is graded; with several, ``batchnorm.ipynb`` wins, else the newest) and notes
  saying which, or the reason there is none.
* ``prepare_notebook`` -- runs in the grader processes: any nbformat version converted to v4, every
  output and attachment removed, written to a temporary copy; the submitted file is never changed.

Collecting decides what is graded, so this module is part of ``grade_class.grader_hash``.
"""

import hashlib
import io
import json
import re
import shutil
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import results, submission
from .exercises import ASSIGNMENT_ID, NOTEBOOK_NAME

# nbgrader's documented example for zip_collect's FileNameCollectorPlugin (it ships no default).
DEFAULT_COLLECT_REGEXP = r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"

MAX_ZIP_MEMBERS = 5000
MAX_ZIP_MEMBER_BYTES = 512 * 2**20    # per extracted notebook
MAX_ZIP_TOTAL_BYTES = 2 * 2**30       # per archive, all members
MAX_ZIP_DEPTH = 2                     # zips inside zips are opened this deep
BIG_NOTEBOOK_NOTE = 5 * 2**20         # mention stripped outputs above this size


# --- names and contents ---------------------------------------------------------------------------

def safe_student_id(name: str) -> str:
    """``name`` as one safe path component (a student id comes from file names students chose)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name.strip()).lstrip(".")
    return cleaned[:100] or "unknown"


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes (a resumed result must have been graded from the same file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- zip downloads (nbgrader zip_collect's layout) ------------------------------------------------

class BadArchive(Exception):
    """An archive that cannot be used; the message says why, for the student's row."""


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
    """The named groups of ``pattern`` on ``path``, or {} when it does not give a student id."""
    if path is None:
        return {}
    m = pattern.match(str(path))
    return m.groupdict() if m and m.groupdict().get("student_id") else {}


def _copy_if_changed(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically, unless ``dest`` already holds the same bytes (so an
    unchanged hand-in keeps its file, and a rerun does not regrade it)."""
    data = src.read_bytes()
    if dest.is_file() and dest.read_bytes() == data:
        return
    results.write_atomic(data, dest)


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
                results.write_atomic(timestamp + "\n", stamp)
    return problems


# --- finding each student's notebook --------------------------------------------------------------

@dataclass
class HandIn:
    """What one student handed in: the notebook to grade and notes on it, or why there is none.
    (Not ``autograder.submission.Submission``, the sandboxed run of a notebook's code.)"""
    student: str
    notebook: Path | None = None
    notes: list = field(default_factory=list)
    error: str | None = None


def _visible(path: Path, folder: Path) -> bool:
    """A notebook file under ``folder`` that is not hidden, a checkpoint or a link."""
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
    """One HandIn per student folder in ``submitted/`` that has an ``<assignment>/`` folder,
    plus one per unusable archive whose student has nothing else."""
    found = {}
    submitted = course / "submitted"
    if submitted.is_dir():
        for student_dir in sorted(submitted.iterdir()):
            folder = student_dir / assignment
            if student_dir.name.startswith(".") or not folder.is_dir():
                continue
            notebook, notes, error = choose_notebook(folder, assignment)
            found[student_dir.name] = HandIn(student_dir.name, notebook, notes, error)
    for student, reason in (problems or {}).items():
        if student in found and found[student].notebook is not None:
            found[student].notes.append(reason)
        else:
            found[student] = HandIn(student, None, [], reason)
    return [found[s] for s in sorted(found)]


# --- preparing a notebook for the grader (runs in the grader processes) ---------------------------

class NotebookUnreadable(Exception):
    """A handed-in file that is not a readable notebook; the message says why, for the student."""


def prepare_notebook(source: Path, dest: Path) -> list:
    """Read ``source`` (any nbformat version), convert to v4, drop outputs and attachments, write
    ``dest``. Returns notes for the row's message; raises NotebookUnreadable with the reason."""
    import nbformat

    size = source.stat().st_size
    if size > submission.MAX_NOTEBOOK_BYTES:     # the one cap, also the grader's (submission.py)
        raise NotebookUnreadable(f"the notebook is {size / 2**20:.0f} MB, more than the "
                                 f"{submission.MAX_NOTEBOOK_BYTES // 2**20} MB that is read")
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
