"""What a result was graded with: the package versions, and a hash of the files that decide a score.

A stored result is kept (grade-class resumes, the nbgrader bridge reuses it, a Dask worker's result
is accepted) only when it was graded under the same ``grader_hash``. The hash covers an explicit
list of the package's files, ``SCORING``; every other file is listed in ``NOT_SCORING``, and a test
(tests/test_registry.py) fails when a module is in neither list, so a new module is a decision,
not an accident. Editing a README, the feedback page or the class report regrades nothing.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# Files whose change can change a score or a message (globs, relative to the package).
SCORING = (
    "exercises.py", "errors.py", "notebook.py", "reference.py", "known_mistakes.py", "reference_models.py",
    "results.py", "grade.py", "check_catalogue.py", "grading_run.py", "submission.py", "channel.py", "training.py",
    "trainingcache.py", "keras_runtime.py", "data.py",
    "models/*.py", "checks/*.py", "sandbox/*.py",
)
# Files that present, schedule or store results, or that build the course: no score depends on them.
NOT_SCORING = (
    "__init__.py", "__main__.py", "atomic.py", "provenance.py", "settings.py", "feedback.py", "text.py",
    "nbgrader_bridge.py", "assign.py", "demo.py", "synthetic_students.py",
    "classroom/*.py", "student/*.py", "templates/*",
    "platforms/canvas.py", "platforms/canvas_push.py", "platforms/export.py",
)

# jax, jaxlib and scipy: the sandboxed worker builds the students' models with Keras' NumPy backend.
VERSIONED_PACKAGES = ("batchnorm-assignment", "tensorflow-cpu", "tensorflow", "keras", "numpy", "nbgrader",
                      "jax", "jaxlib", "scipy")

_versions = None


def installed_version(*distributions) -> str | None:
    """The version of the first of these distributions that is installed, or None (read from its
    metadata: the package itself is not imported). The one reader of installed versions."""
    from importlib.metadata import PackageNotFoundError, version
    for name in distributions:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def versions() -> dict:
    """{"python": ..., package: version} of what grades here (read from metadata once per process)."""
    global _versions
    if _versions is None:
        found = {"python": platform.python_version()}
        for package in VERSIONED_PACKAGES:
            if (installed := installed_version(package)) is not None:
                found[package] = installed
        _versions = found
    return dict(_versions)


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks of 1 MiB. The one file hash."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scoring_files(package=PACKAGE_DIR) -> list:
    """The package's files that decide a score, sorted by their path inside the package."""
    package = Path(package)
    found = {path for pattern in SCORING for path in package.glob(pattern) if path.is_file()}
    return sorted(found, key=lambda p: p.relative_to(package).as_posix())


def grader_hash(package=PACKAGE_DIR) -> str:
    """A hash of the scoring files and the versions: a result graded under another hash is graded again."""
    package = Path(package)
    h = hashlib.sha256()
    for path in scoring_files(package):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(versions(), sort_keys=True).encode())
    return h.hexdigest()[:20]
