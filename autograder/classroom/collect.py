"""Collect: what students hand in -> one notebook per student, for the grader processes to read.

Two steps, each usable on its own:

* ``collect_archives`` -- LMS downloads in ``nbgrader zip_collect``'s layout. The files in
  ``downloaded/batchnorm/archive/`` are extracted safely (no absolute or ``..`` paths, no links,
  size and member caps) into ``downloaded/batchnorm/extracted/<zip name>/`` and every notebook is
  copied to ``submitted/<student_id>/batchnorm/<file_id>.ipynb``. The student id and file id come
  from ``c.FileNameCollectorPlugin.named_regexp`` in the course's nbgrader_config.py (nbgrader's
  documented pattern ``.*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)``
  when unset), else from the zip's name (one zip per student), else from the file name.
* ``discover`` -- one ``HandIn`` per ``submitted/<student>/batchnorm/`` folder: the notebook to
  grade (a renamed one is graded; with several, ``batchnorm.ipynb`` wins, else the newest) and notes
  saying which, or the reason there is none.

Nothing here reads a notebook's contents: the grader process that grades it reads it, once, with
``autograder.notebook.read`` (which converts old versions and drops outputs); the submitted file is
never changed.
"""

import io
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..atomic import write_atomic
from ..errors import ArchiveUnusable
from ..exercises import ASSIGNMENT_ID, NOTEBOOK_NAME

# nbgrader's documented example for zip_collect's FileNameCollectorPlugin (it ships no default).
DEFAULT_COLLECT_REGEXP = r".*_(?P<student_id>\w+)_attempt_(?P<timestamp>[0-9\-]+)_(?P<file_id>.*)"

MAX_ZIP_MEMBERS = 5000
MAX_ZIP_MEMBER_BYTES = 512 * 2**20    # per extracted notebook
MAX_ZIP_TOTAL_BYTES = 2 * 2**30       # per archive, all members
MAX_ZIP_DEPTH = 2                     # zips inside zips are opened this deep


# --- names ----------------------------------------------------------------------------------------

def safe_student_id(name: str) -> str:
    """``name`` as one safe path component (a student id comes from file names students chose)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name.strip()).lstrip(".")
    return cleaned[:100] or "unknown"


# --- zip downloads (nbgrader zip_collect's layout) ------------------------------------------------

def _safe_parts(name: str):
    """The path parts of a zip member, or None when the name could escape the folder."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("..", ".", "") for p in parts):
        return None
    return parts


def _refusal(name: str, is_link: bool) -> str:
    """Why a zip member is never written: its name could escape the folder, or it is a link."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "path traversal (..)"
    if is_link:
        return "a symbolic link"
    return "an unsafe path"


def _extract_zip(source, dest: Path, depth: int = 1, budget=None, refused=None) -> list:
    """Extract the notebooks (and, ``MAX_ZIP_DEPTH`` deep, zips in zips) of ``source`` under ``dest``.

    Refuses absolute or ``..`` member names and links; stops at the size and member caps.
    Returns the extracted notebook paths; each refused notebook or zip member is appended to
    ``refused`` as (member name, why). Raises ArchiveUnusable for a zip that cannot be read.
    """
    budget = budget if budget is not None else [MAX_ZIP_TOTAL_BYTES]
    refused = refused if refused is not None else []
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ArchiveUnusable(f"not a readable zip file ({e})") from None
    found = []
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise ArchiveUnusable(f"{len(members)} files in the archive, more than the limit of {MAX_ZIP_MEMBERS}")
        for info in members:
            if info.is_dir():
                continue
            parts = _safe_parts(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if parts is None or mode == stat.S_IFLNK:       # path traversal or a link: never written
                if info.filename.lower().endswith((".ipynb", ".zip")):
                    refused.append((info.filename, _refusal(info.filename, mode == stat.S_IFLNK)))
                continue
            if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
                continue
            lower = parts[-1].lower()
            is_zip = lower.endswith(".zip")
            if not (lower.endswith(".ipynb") or (is_zip and depth < MAX_ZIP_DEPTH)):
                continue
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise ArchiveUnusable(f"{info.filename} is larger than {MAX_ZIP_MEMBER_BYTES // 2**20} MB")
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
                            raise ArchiveUnusable("the archive unpacks to more than the size limit")
            except ArchiveUnusable:
                raise
            except Exception as e:   # CRC errors, encrypted members, unknown compression
                raise ArchiveUnusable(f"could not extract {info.filename}: {type(e).__name__}: {e}") from None
            target = dest.joinpath(*parts)
            if is_zip:
                inner = target.with_suffix("")
                data.seek(0)
                found += _extract_zip(data, inner, depth + 1, budget, refused)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.getvalue())
            found.append(target)
    return found


def _refused_message(rel, refused) -> str | None:
    """The row's reason when an archive yields no notebook because its notebook was refused."""
    notebooks = [(name, why) for name, why in refused if name.lower().endswith(".ipynb")] or refused
    if not notebooks:
        return None
    name, why = notebooks[0]
    more = f" (and {len(notebooks) - 1} more refused)" if len(notebooks) > 1 else ""
    return f"the archive {rel}'s member {name} was refused: {why}{more}; re-zip the notebook itself"


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
    write_atomic(data, dest)


def collect_archives(course: Path, regexp: str | None = None) -> dict:
    """Extract ``downloaded/batchnorm/archive`` into ``extracted/`` and copy each notebook into
    ``submitted/<student>/batchnorm/``. Returns {student: reason} for archives that could not be used."""
    base = course / "downloaded" / ASSIGNMENT_ID
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
            refused = []
            try:
                found = _extract_zip(path, dest, refused=refused)
            except ArchiveUnusable as e:
                student = safe_student_id(_match(pattern, path).get("student_id") or path.stem)
                problems[student] = f"the archive {rel} could not be used: {e}"
                continue
            if not found:
                student = safe_student_id(_match(pattern, path).get("student_id") or path.stem)
                problems.setdefault(student, _refused_message(rel, refused)
                                    or f"the archive {rel} holds no notebook (.ipynb)")
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
        folder = course / "submitted" / student / ASSIGNMENT_ID
        _copy_if_changed(nb, folder / name)
        if timestamp:
            stamp = folder / "timestamp.txt"
            if not stamp.is_file() or stamp.read_text().strip() != timestamp:
                write_atomic(timestamp + "\n", stamp)
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


# What archivers add beside a hand-in (hidden folders, checkpoints among them, are skipped too).
SKIPPED_FOLDERS = ("__MACOSX",)
# How many folders deep a hand-in's notebook is looked for: it is a folder or two down, and os.walk
# (like Path.rglob) recurses on Python 3.11, so a tree nested a thousand deep would otherwise end in a
# RecursionError, the grader's, for the whole class.
MAX_DEPTH = 16


def notebooks_below(folder: Path) -> tuple:
    """(the notebooks in ``folder`` and its sub-folders down to MAX_DEPTH, sorted; whether deeper folders
    were left unsearched). Hidden files and folders, SKIPPED_FOLDERS and links are never taken or
    followed: a link could point at the grader's own files."""
    found, too_deep = [], False
    for where, names, files in os.walk(folder, followlinks=False):
        names[:] = sorted(n for n in names if not n.startswith(".") and n not in SKIPPED_FOLDERS)
        if names and len(Path(where).relative_to(folder).parts) >= MAX_DEPTH:
            too_deep, names[:] = True, []
        found += [Path(where, name) for name in sorted(files) if _visible(Path(where, name), folder)]
    return found, too_deep


def choose_notebook(folder: Path):
    """(notebook, notes, error) for one student's ``submitted/<student>/batchnorm/`` folder."""
    where = f"submitted/{folder.parent.name}/{ASSIGNMENT_ID}/"
    notes = []
    candidates = sorted(p for p in folder.iterdir() if _visible(p, folder))
    too_deep = False
    if not candidates:
        candidates, too_deep = notebooks_below(folder)
        if candidates:
            notes.append("the notebook was in a subfolder")
    if not candidates:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        deeper = f"; folders more than {MAX_DEPTH} deep are not looked in" if too_deep else ""
        return None, [], (f"no notebook (.ipynb) in {where}"
                          + (f" (found: {shown}{deeper})" if others else " (the folder is empty)"))

    def rel(p):
        return p.relative_to(folder).as_posix()

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


def discover(course: Path, problems: dict | None = None) -> list:
    """One HandIn per student folder in ``submitted/`` that has a ``batchnorm/`` folder,
    plus one per unusable archive whose student has nothing else."""
    found = {}
    submitted = course / "submitted"
    if submitted.is_dir():
        for student_dir in sorted(submitted.iterdir()):
            folder = student_dir / ASSIGNMENT_ID
            if student_dir.name.startswith(".") or not folder.is_dir():
                continue
            notebook, notes, error = choose_notebook(folder)
            found[student_dir.name] = HandIn(student_dir.name, notebook, notes, error)
    for student, reason in (problems or {}).items():
        if student in found and found[student].notebook is not None:
            found[student].notes.append(reason)
        else:
            found[student] = HandIn(student, None, [], reason)
    return [found[s] for s in sorted(found)]
