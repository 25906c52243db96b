"""Install a fake isolated grader in the grader processes (for tests of what surrounds grading)."""

import json
import os

from autograder import check_catalogue, provenance
from autograder.classroom import server


def install(tmp_path, monkeypatch, source: str, module: str, catalogue):
    """Write ``source`` as module ``module``, make the grader processes (server.GRADER) load its
    grade_notebook, and return ``calls()``: what it was asked to grade, from the log it appends to
    ($FAKE_GRADER_LOG)."""
    module_dir = tmp_path / "fakemod"
    module_dir.mkdir()
    (module_dir / f"{module}.py").write_text(source)
    # the grader processes find it on their PYTHONPATH (they inherit this process's environment)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(module_dir), os.environ.get("PYTHONPATH")])))
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("FAKE_GRADER_LOG", str(log))
    monkeypatch.setattr(server, "GRADER", f"{module}:grade_notebook")
    monkeypatch.setattr(check_catalogue, "collect_checks", catalogue)     # the error results made here
    # the real hash follows the package's files, which may change while the tests run
    monkeypatch.setattr(provenance, "grader_hash", lambda package=None: "fake-grader-1")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return calls
