"""Install a fake isolated grader in the pool's grader processes (for tests of what surrounds grading)."""

import json

from autograder import grade_class, pool, results


def install(tmp_path, monkeypatch, source: str, module: str, catalogue):
    """Write ``source`` as module ``module``, make the pool's grader processes call its
    grade_notebook, and return ``calls()``: what it was asked to grade, from the log it appends to
    ($FAKE_GRADER_LOG)."""
    module_dir = tmp_path / "fakemod"
    module_dir.mkdir()
    (module_dir / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(module_dir))
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("FAKE_GRADER_LOG", str(log))
    monkeypatch.setattr(pool, "GRADER", f"{module}:grade_notebook")
    monkeypatch.setattr(results, "catalogue", catalogue)
    # the real hash follows the package's files, which may change while the tests run
    monkeypatch.setattr(grade_class, "grader_hash", lambda: "fake-grader-1")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return calls
