"""What the student's code may see: one allow-list, turned into bubblewrap's mounts (bwrap.py) and
into Landlock's rules (the worker applies them with confine.py), so that both layers show the same.

Read-only: Python (its prefixes, every folder on the interpreter's chain of links, the
site-packages on its path), the system's programs and libraries (``/usr`` without ``/usr/local``
unless Python lives there, ``/bin``, ``/lib``, ``/lib64`` or their links), the loader's cache and
the time zone (``/etc/ld.so.cache``, ``/etc/localtime``). Nothing else of the machine: no home
folder, ``/root``, ``/srv``, ``/opt``, ``/mnt``, ``/media``, no other checkout, course folder or
exchange. The worker's own folder, its scratch and a few devices are added by process.py, per mode.

Hidden inside those: the grader's package and its install records in site-packages (the
``batchnorm_assignment`` dist-info, an editable install's ``__editable__`` finder and .pth), and any
folder the caller hides that lies inside them. bubblewrap covers a hidden folder with an empty
tmpfs and a hidden file with /dev/null. Landlock cannot take anything back from a rule on a parent
folder, so a read-only folder with something hidden inside is *carved*: its entries are allowed one
by one, down to the hidden ones. A carved site-packages folder may still be listed (Python's import
system lists it to find modules): its entries' names show, never their contents.
"""

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent       # the autograder package
DISTRIBUTION = "batchnorm_assignment"                     # pyproject's name, normalized (a test checks)
# Install records of the grader in a site-packages folder (dist-info, egg-link, editable finder, .pth).
RECORD_PATTERNS = (f"*{DISTRIBUTION}*", f"*{DISTRIBUTION.replace('_', '-')}*")

SYSTEM_READ_ONLY = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32",
                    "/etc/ld.so.cache", "/etc/localtime")
SYSTEM_HIDDEN = ("/usr/local",)            # brought back only where Python lives in it


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies beneath it (both absolute, normalized)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _is_record(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatch(lowered, pattern) for pattern in RECORD_PATTERNS)


def _site_packages(python_dirs) -> list:
    return [d for d in python_dirs if Path(d).name in ("site-packages", "dist-packages")]


def grader_records(python_dirs) -> set:
    """The grader's own files in the site-packages folders: the package (a non-editable install),
    its dist-info, an editable install's finder and .pth, and their compiled copies."""
    found = set()
    for folder in _site_packages(python_dirs):
        for where in (folder, os.path.join(folder, "__pycache__")):
            try:
                names = os.listdir(where)
            except OSError:
                continue
            found |= {os.path.join(where, name) for name in names if _is_record(name)}
        if os.path.isdir(os.path.join(folder, PACKAGE_DIR.name)) and \
                os.path.isfile(os.path.join(folder, PACKAGE_DIR.name, "reference.py")):
            found.add(os.path.join(folder, PACKAGE_DIR.name))
    return found


@dataclass(frozen=True)
class AllowList:
    """The machine's part of what the worker sees (absolute paths, links resolved in folders)."""
    read_only: tuple          # folders and files, readable (and executable) beneath
    hidden: tuple             # inside read_only: not readable at all
    links: tuple              # (path, target): system links re-made under bwrap (/lib -> usr/lib)
    listable: tuple           # read-only folders whose entries may be listed when carved (site-packages)

    def landlock_rules(self) -> tuple:
        """(read_only, list_only) for confine.confine: every read-only path, carved around the
        hidden ones (see the module's docstring)."""
        read, listed = [], []
        for path in self.read_only:
            inner = [h for h in self.hidden if inside(h, path) and h != path]
            if inner and os.path.isdir(path):
                carved_read, carved_list = _carve(path, inner, self.hidden, set(self.listable))
                read += carved_read
                listed += carved_list
            else:
                read.append(path)
        return tuple(dict.fromkeys(read)), tuple(dict.fromkeys(listed))


def _carve(folder: str, inner, every_hidden, listable) -> tuple:
    """Rules for ``folder`` with the ``inner`` hidden paths beneath it left out: each entry on its
    own, descending only towards hidden paths. A link is followed by Landlock, so a link to a place
    that holds (or is inside) a hidden path is left out too."""
    read, listed = [], []
    if folder in listable:
        listed.append(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return read, listed               # cannot be listed: nothing of it (fail closed)
    for name in names:
        entry = os.path.join(folder, name)
        if entry in inner:
            continue
        if os.path.islink(entry):
            target = os.path.realpath(entry)
            if not any(inside(h, target) or inside(target, h) for h in every_hidden):
                read.append(entry)
            continue
        deeper = [h for h in inner if inside(h, entry)]
        if deeper and os.path.isdir(entry):
            more_read, more_listed = _carve(entry, deeper, every_hidden, listable)
            read += more_read
            listed += more_listed
        else:
            read.append(entry)
    return read, listed


def build(python_dirs, hide=()) -> AllowList:
    """The allow-list for a worker whose Python needs ``python_dirs`` (process._python_dirs), with
    the folders ``hide`` kept out wherever they lie inside it."""
    python_dirs = {os.path.normpath(str(d)) for d in python_dirs}
    read_only, links = set(python_dirs), []
    for path in SYSTEM_READ_ONLY:
        if os.path.islink(path):
            target = os.path.realpath(path)
            if os.path.exists(target):
                links.append((path, os.readlink(path)))
                read_only.add(target)
        elif os.path.exists(path):
            read_only.add(path)
    candidates = {*SYSTEM_HIDDEN, str(PACKAGE_DIR), *grader_records(python_dirs),
                  *(str(Path(h).resolve()) for h in hide if h)}
    # Hidden only what lies strictly inside something read-only; a folder that is itself on the
    # list (Python living in /usr/local) stays.
    hidden = {h for h in candidates if h not in read_only and any(inside(h, r) and h != r for r in read_only)}
    listable = tuple(sorted(_site_packages(python_dirs)))
    return AllowList(tuple(sorted(read_only)), tuple(sorted(hidden)), tuple(sorted(links)), listable)
