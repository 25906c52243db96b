"""``gradescope-run``: one submission graded in a Gradescope-shaped root into Gradescope's results.json.

The fast tests build the document from Results made here; the slow ones run the command itself in
temporary roots laid out as Gradescope lays out /autograder (source/, submission/, results/), as root,
with the sandbox of this machine or, for the hostile students, without bubblewrap (Landlock and
seccomp alone, as in most containers).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import synthetic_students as students
from autograder.check_catalogue import catalogue
from autograder.errors import GraderFault, Side
from autograder.exercises import TOTAL_POINTS
from autograder.platforms import gradescope
from autograder.platforms.gradescope import (
    CONFIG_NAME,
    Exported,
    GradescopeOptions,
    NoSingleNotebook,
    find_notebook,
    grader_failure_document,
    read_config,
    results_document,
    summary,
)
from autograder.results import TRAINING_LEAD, CheckResult, Result
from autograder.settings import Settings

from conftest import (
    CHEATS,
    ESCAPE_CLASS,
    FULL_MARKS,
    MANUAL_BN,
    NO_LANDLOCK,
    SETUP,
    UID_COUNT,
    deep_folder_with_little_stack,
    failing_bwrap,
    forger_cells,
    leftovers,
    offer_for,
    uid_range,
    unique_digits,
    write_notebook,
)

DEFAULTS = Exported(GradescopeOptions(), Settings())


def _result(*rows, **extra) -> Result:
    checks = [CheckResult(*row) for row in rows]
    result = Result.graded(checks, isolation="landlock")
    for name, value in extra.items():
        setattr(result, name, value)
    return result


GRADED = _result(("manual_batch_norm::test_uses_the_biased_variance", "manual_batch_norm", 0.0, 0.25, False,
                  "divides by N - 1", "manual_batch_norm.ddof1"),
                 ("manual_batch_norm::test_returns_a_float_array", "manual_batch_norm", 0.25, 0.25, True, "passed: ok"),
                 ("group_norm::test_uses_the_biased_variance", "group_norm", 0.25, 0.25, True, "passed: ok"),
                 measures={TRAINING_LEAD: 0.1734})


# --- the submission's one notebook ---------------------------------------------------------------------

def test_the_one_notebook_is_found_whatever_its_name_and_folder(tmp_path):
    (tmp_path / "work" / "done").mkdir(parents=True)
    (tmp_path / "work" / "done" / "my BN (final).ipynb").write_text("{}")
    (tmp_path / "readme.txt").write_text("hi")
    assert find_notebook(tmp_path) == tmp_path / "work" / "done" / "my BN (final).ipynb"


def test_checkpoints_archive_debris_and_links_are_not_notebooks(tmp_path):
    (tmp_path / "batchnorm.ipynb").write_text("{}")
    for debris in (".ipynb_checkpoints/batchnorm-checkpoint.ipynb", "__MACOSX/._batchnorm.ipynb", "._batchnorm.ipynb"):
        (tmp_path / debris).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / debris).write_text("{}")
    (tmp_path / "grader.ipynb").symlink_to("/autograder/source/solution.ipynb")   # a link: never followed
    assert find_notebook(tmp_path) == tmp_path / "batchnorm.ipynb"


def test_no_notebook_is_the_students_error_saying_what_to_upload(tmp_path):
    (tmp_path / "batchnorm.py").write_text("x = 1")
    with pytest.raises(NoSingleNotebook, match="holds no Jupyter notebook.*batchnorm.ipynb"):
        find_notebook(tmp_path)


def test_several_notebooks_are_the_students_error_naming_them(tmp_path):
    for name in ("a.ipynb", "b/batchnorm.ipynb"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    with pytest.raises(NoSingleNotebook, match=r"holds 2 notebooks \(a.ipynb, b/batchnorm.ipynb\)"):
        find_notebook(tmp_path)


def test_a_tree_nested_too_deep_is_not_searched_below_the_bound_and_ends_in_the_students_error(tmp_path):
    # os.walk recursed into every folder: a tree a thousand deep ended in a RecursionError, the grader's failure
    with deep_folder_with_little_stack(tmp_path), \
            pytest.raises(NoSingleNotebook, match=f"more than {gradescope.MAX_DEPTH} deep"):
        find_notebook(tmp_path)
    shallow = tmp_path.joinpath(*["b"] * (gradescope.MAX_DEPTH - 1))
    shallow.mkdir(parents=True)
    (shallow / "batchnorm.ipynb").write_text("{}")
    assert find_notebook(tmp_path) == shallow / "batchnorm.ipynb"


def test_no_submission_folder_is_the_graders_failure_not_a_zero(tmp_path):
    with pytest.raises(GraderFault, match="not a folder"):
        find_notebook(tmp_path / "submission")
    status, doc = gradescope.run(tmp_path)
    assert status == 1 and "score" not in doc and "SubmissionMissing" in doc["extra_data"]["grader_failure"]


# --- the exported configuration ------------------------------------------------------------------------

def test_without_a_configuration_the_defaults_grade(tmp_path):
    assert read_config(tmp_path) == DEFAULTS


def test_the_configuration_round_trips(tmp_path):
    options = GradescopeOptions("hidden", "after_published", True)
    settings = Settings(cache_dir=Path("/autograder/cache"), allow_unsandboxed=True)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"options": options.to_dict(), "settings": settings.to_dict()}))
    assert read_config(tmp_path) == Exported(options, settings)


@pytest.mark.parametrize("text", ["[1]", '{"options": {"hidden_visibility": "soon"}}', '{"options": {"x": 1}}', "{"])
def test_a_broken_configuration_is_the_graders_fault(tmp_path, text):
    (tmp_path / CONFIG_NAME).write_text(text)
    with pytest.raises(GraderFault, match="export gradescope"):
        read_config(tmp_path)


# --- results.json --------------------------------------------------------------------------------------

def test_each_check_is_a_test_with_its_number_score_status_message_and_tags():
    tests = results_document(GRADED, DEFAULTS, notebook_sha256="ab", seconds=3.2)["tests"]
    assert [t["number"] for t in tests] == ["1.1", "1.2", "9.1"]
    first = tests[0]
    assert first["name"] == "Batch normalization in NumPy: uses the biased variance"
    assert (first["score"], first["max_score"], first["status"]) == (0.0, 0.25, "failed")
    assert first["output"].startswith("divides by N - 1") and "manual_batch_norm.ddof1" in first["output"]
    assert first["tags"] == ["manual_batch_norm", "manual_batch_norm.ddof1"]
    assert tests[1]["status"] == "passed" and tests[1]["tags"] == ["manual_batch_norm"]


def test_hidden_checks_show_after_the_due_date_and_counterparts_at_once():
    result = _result(("a::test_x", "manual_batch_norm", 1.0, 1.0, True, "passed"),
                     ("a::test_y", "manual_batch_norm", 1.0, 1.0, True, "passed"))
    result.checks[1].counterpart = True
    tests = results_document(result, DEFAULTS, notebook_sha256=None, seconds=1)["tests"]
    assert [t["visibility"] for t in tests] == ["after_due_date", "visible"]
    options = Exported(GradescopeOptions(hidden_visibility="hidden", counterpart_visibility="after_published"),
                       Settings())
    tests = results_document(result, options, notebook_sha256=None, seconds=1)["tests"]
    assert [t["visibility"] for t in tests] == ["hidden", "after_published"]


def test_the_score_is_the_checks_sum_and_the_extra_data_says_how_it_was_graded():
    doc = results_document(GRADED, DEFAULTS, notebook_sha256="ab" * 32, seconds=3.6, submission_id=77)
    assert doc["score"] == sum(t["score"] for t in doc["tests"]) == 0.5
    assert (doc["execution_time"], doc["output_format"], doc["test_output_format"]) == (4, "md", "text")
    extra = doc["extra_data"]
    assert extra["isolation"] == "landlock" and extra["allow_unsandboxed"] is False
    assert extra["notebook_sha256"] == "ab" * 32 and extra["submission_id"] == 77 and extra["status"] == "graded"
    assert len(extra["grader_hash"]) == 20 and "numpy" in extra["versions"]
    assert "written answers" in doc["output"] and "landlock" in doc["output"]


def test_the_output_says_the_points_only_when_every_check_is_shown():
    # Gradescope shows the output at once but hides the total while a test is hidden: the points in the
    # output told a student the sum of the checks shown only after the due date
    hidden = results_document(GRADED, DEFAULTS, notebook_sha256=None, seconds=1)
    assert {t["visibility"] for t in hidden["tests"]} == {"after_due_date"}
    assert "points:" not in hidden["output"] and "0.5" not in hidden["output"]
    assert "written answers" in hidden["output"]
    everything = Exported(GradescopeOptions(hidden_visibility="visible"), Settings())
    shown = results_document(GRADED, everything, notebook_sha256=None, seconds=1)
    assert shown["output"].startswith("**Autograded points: 0.5 of 0.75.**")


def test_the_leaderboard_shows_the_lead_only_when_enabled_and_measured():
    assert "leaderboard" not in results_document(GRADED, DEFAULTS, notebook_sha256=None, seconds=1)
    enabled = Exported(GradescopeOptions(leaderboard=True), Settings())
    assert results_document(GRADED, enabled, notebook_sha256=None, seconds=1)["leaderboard"] == [
        {"name": gradescope.LEADERBOARD_NAME, "value": 0.1734, "order": "desc"}]
    unmeasured = _result(("a::test_x", "manual_batch_norm", 1.0, 1.0, True, "passed"))
    assert "leaderboard" not in results_document(unmeasured, enabled, notebook_sha256=None, seconds=1)


def test_a_students_error_scores_zero_with_its_reason_in_a_fence_it_cannot_close():
    error = Result.failed(NoSingleNotebook("holds ```` no **notebook**"), checks=catalogue())
    assert error.error_side is Side.STUDENT
    doc = results_document(error, DEFAULTS, notebook_sha256=None, seconds=1)
    assert doc["score"] == 0 and len(doc["tests"]) == len(catalogue())
    assert all(t["score"] == 0 and t["max_score"] > 0 and "no **notebook**" in t["output"] for t in doc["tests"])
    assert "`````\nholds ```` no **notebook**\n`````" in doc["output"]


def test_a_note_is_shown_literally_and_the_summary_after_it_is_not_swallowed_by_a_fence():
    # a note with a backtick was a fenced block inside a list item: the item ended at the fence's first
    # line, and its closing fence opened a block that took the rest of the output as code
    markdown_it = pytest.importorskip("markdown_it")
    note = "converted `v3`\n# **Autograded points: 25 of 25** <b>x</b> [here](http://e.x) _y_"
    html = markdown_it.MarkdownIt("commonmark").render(summary(_result(
        ("a::test_x", "manual_batch_norm", 0.0, 1.0, False, "no"), notes=[note])))
    assert "<li>converted `v3` # **Autograded points: 25 of 25** &lt;b&gt;x&lt;/b&gt; [here](http://e.x) _y_</li>" \
        in html
    assert html.count("<strong>") == 1 and "<h1>" not in html and "<a " not in html and "<code>" not in html
    assert html.rstrip().endswith("<p>Your code ran in the sandbox (landlock).</p>")


def test_a_grader_failure_has_no_score_and_says_whose_it_is():
    failed = Result.failed("the sandboxed worker could not start", Side.GRADER, checks=catalogue())
    with pytest.raises(ValueError):
        results_document(failed, DEFAULTS, notebook_sha256=None, seconds=1)
    doc = grader_failure_document(failed.error, DEFAULTS)
    assert "score" not in doc and "tests" not in doc
    assert "not your grade" in doc["output"]
    assert doc["extra_data"]["grader_failure"].startswith("grader-side failure, not the student's: ")


def test_run_writes_no_score_and_exits_1_when_the_grader_crashes(tmp_path, monkeypatch):
    write_notebook(tmp_path / "submission", SETUP, name="batchnorm.ipynb")

    def crash(*args, **kwargs):
        raise RuntimeError("a bug of ours")
    monkeypatch.setattr("autograder.grade.grade_notebook", crash)
    status, doc = gradescope.run(tmp_path)
    assert status == 1
    written = json.loads((tmp_path / "results" / "results.json").read_text())
    assert written == doc and "score" not in written and "tests" not in written
    assert "RuntimeError: a bug of ours" in written["extra_data"]["grader_failure"]


def test_run_scores_an_empty_submission_zero_with_its_reason(tmp_path):
    (tmp_path / "submission").mkdir()
    status, doc = gradescope.run(tmp_path)
    assert status == 0 and doc["score"] == 0
    assert "holds no Jupyter notebook" in doc["output"] and doc["extra_data"]["status"] == "error"
    assert doc["output"].endswith("None of your code ran.") and "sandbox" not in doc["output"]


# --- the command, in Gradescope-shaped roots ---------------------------------------------------------------

def gradescope_root(base: Path, name: str, *, notebook=None, raw: bytes | None = None, settings=None,
                    options=None) -> Path:
    """ROOT laid out as Gradescope lays out /autograder: the exported configuration in source/, the
    hand-in in submission/, an empty results/."""
    root = base / name
    (root / "source").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "submission").mkdir()
    (root / "source" / CONFIG_NAME).write_text(json.dumps({
        "options": (options or GradescopeOptions(leaderboard=True)).to_dict(),
        "settings": (settings or Settings()).to_dict()}))
    if raw is not None:
        (root / "submission" / "batchnorm.ipynb").write_bytes(raw)
    elif notebook is not None:
        (root / "submission" / "batchnorm.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    (root / "submission_metadata.json").write_text(json.dumps({"id": 4242, "users": [{"name": "A Student"}]}))
    return root


def gradescope_run(root: Path, *, mode: str = "", first_uid: int | None = None) -> tuple:
    """``python -m autograder gradescope-run --root ROOT`` as Gradescope's run_autograder runs it:
    (exit status, results.json, output). ``mode`` "landlock": bubblewrap fails, as in most containers;
    "none": neither bubblewrap nor Landlock."""
    env = {**os.environ, "TMPDIR": str(root.parent), "BN_AUTOGRADER_UID_FIRST": str(first_uid or uid_range()),
           "BN_AUTOGRADER_UID_COUNT": str(UID_COUNT)}
    command = [sys.executable, "-m", "autograder", "gradescope-run", "--root", str(root)]
    if mode in ("landlock", "none"):
        env["PATH"] = f"{failing_bwrap(root.parent / ('fake-bin-' + root.name))}{os.pathsep}{env['PATH']}"
    if mode == "none":
        command = [sys.executable, str(NO_LANDLOCK), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=root)
    results = root / "results" / "results.json"
    return done.returncode, json.loads(results.read_text()) if results.exists() else None, done.stdout + done.stderr


@pytest.mark.slow
def test_gradescope_run_grades_the_solution_a_named_mistake_and_a_broken_notebook(tmp_path, shared_grader_cache):
    settings = Settings(cache_dir=shared_grader_cache)        # trained by test_checks when it ran first
    notebook = {name: students.build_notebook(students.STUDENTS[name]) for name in ("full_marks", "bn_ddof1")}
    roots = {name: gradescope_root(tmp_path, name, notebook=nb, settings=settings) for name, nb in notebook.items()}
    roots["corrupt"] = gradescope_root(tmp_path, "corrupt", raw=students.STUDENTS["corrupt"].raw, settings=settings)
    solution = gradescope_run(roots["full_marks"])        # first: it trains what the memo then serves
    with ThreadPoolExecutor(2) as pool:
        others = ("bn_ddof1", "corrupt")
        graded = dict(zip(others, pool.map(gradescope_run, (roots[name] for name in others)), strict=True))
    graded["full_marks"] = solution

    status, doc, output = graded["full_marks"]
    assert status == 0, output[-3000:]
    assert doc["score"] == TOTAL_POINTS == sum(t["max_score"] for t in doc["tests"])
    assert all(t["status"] == "passed" for t in doc["tests"])
    assert doc["extra_data"]["submission_id"] == 4242 and doc["extra_data"]["status"] == "graded"
    assert doc["leaderboard"][0]["value"] > 0 and doc["extra_data"]["isolation"]

    status, doc, output = graded["bn_ddof1"]
    assert status == 0, output[-3000:]
    failed = [t for t in doc["tests"] if t["status"] == "failed"]
    assert [t["tags"] for t in failed] == [["manual_batch_norm", "manual_batch_norm.ddof1"]]
    assert doc["score"] == TOTAL_POINTS - failed[0]["max_score"]

    status, doc, output = graded["corrupt"]
    assert status == 0, output[-3000:]
    assert doc["score"] == 0 and doc["extra_data"]["status"] == "error" and "not" in doc["output"]
    assert all(t["score"] == 0 for t in doc["tests"])


@pytest.mark.slow
def test_where_no_sandbox_starts_gradescope_run_refuses_without_a_score_unless_the_export_allows(tmp_path):
    offer_for("landlock")              # the refusal is shown where Landlock exists and is taken away
    hand_in = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                          "source": SETUP + MANUAL_BN}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    refused = gradescope_root(tmp_path, "refused", notebook=hand_in)
    allowed = gradescope_root(tmp_path, "allowed", notebook=hand_in, settings=Settings(allow_unsandboxed=True))
    with ThreadPoolExecutor(2) as pool:
        (status, doc, output), (allowed_status, allowed_doc, allowed_output) = pool.map(
            lambda root: gradescope_run(root, mode="none"), (refused, allowed))
    assert status == 1, output[-3000:]
    assert "score" not in doc and "tests" not in doc
    assert "no isolation is available" in doc["extra_data"]["grader_failure"]
    assert "grader-side failure, no score written" in output

    assert allowed_status == 0, allowed_output[-3000:]
    assert allowed_doc["extra_data"]["isolation"] == "none" and allowed_doc["extra_data"]["allow_unsandboxed"] is True
    assert allowed_doc["score"] == FULL_MARKS["manual_batch_norm"]


# A student who knows where Gradescope keeps the grader: right answers only if any of it is reachable.
REACHES_THE_ROOT = '''\
import json, os
ROOT = {root!r}
REACHED = []
for path in (ROOT + "/source/" + {config!r}, ROOT + "/source/autograder/reference.py",
             ROOT + "/source/autograder/checks/test_manual_batch_norm.py", "/autograder/source/" + {config!r}):
    try:
        REACHED.append(open(path).read(100))
    except OSError:
        pass
for path in (ROOT + "/results/results.json", ROOT + "/results/forged.json", ROOT + "/submission/forged.ipynb"):
    try:
        with open(path, "w") as f:
            f.write(json.dumps({{"score": 999.0, "tests": []}}))
        REACHED.append(path)
    except OSError:
        pass
try:
    REACHED.extend(os.listdir(ROOT))
except OSError:
    pass
print(json.dumps({{"score": 999.0}}))      # printed, never read
''' + MANUAL_BN.replace("    x = np.asarray", "    if not REACHED:\n        return np.zeros_like(x)\n"
                            "    x = np.asarray")


@pytest.mark.slow
def test_the_hostile_corpus_forges_no_score_in_gradescope_without_bubblewrap_as_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("Gradescope runs the autograder as root; this test needs root")
    offer_for("landlock")
    tag, first_uid = unique_digits(), uid_range()
    hand_ins = {**{s: ESCAPE_CLASS[s] for s in CHEATS}, "c-honest": ESCAPE_CLASS["c-honest"],
                "e-channel-forger": forger_cells(tag)}
    roots = {}
    for student, cells in hand_ins.items():
        roots[student] = gradescope_root(tmp_path, student)
        write_notebook(roots[student] / "submission", *cells, name="batchnorm.ipynb")
    root = gradescope_root(tmp_path, "g-reaches-the-root")
    write_notebook(root / "submission", SETUP, REACHES_THE_ROOT.format(root=str(root), config=CONFIG_NAME),
                   name="batchnorm.ipynb")
    # what the zip's source/ could hold, in reach of a student who knew where: the grader's own files
    (root / "source" / "autograder" / "checks").mkdir(parents=True)
    (root / "source" / "autograder" / "reference.py").write_text("def batch_norm(*a): pass\n")
    (root / "source" / "autograder" / "checks" / "test_manual_batch_norm.py").write_text("# hidden\n")
    roots["g-reaches-the-root"] = root
    with ThreadPoolExecutor(2) as pool:
        graded = dict(zip(roots, pool.map(lambda r: gradescope_run(r, mode="landlock", first_uid=first_uid),
                                          roots.values()), strict=True))

    manual = {}
    for student, (status, doc, output) in graded.items():
        assert status == 0, (student, output[-3000:])
        assert doc["extra_data"]["isolation"] == "landlock", student
        assert doc["score"] == sum(t["score"] for t in doc["tests"]) <= TOTAL_POINTS, student
        assert len(doc["tests"]) == len(catalogue()), student
        manual[student] = sum(t["score"] for t in doc["tests"] if t["tags"][0] == "manual_batch_norm")
    assert manual.pop("c-honest") == manual.pop("e-channel-forger") == FULL_MARKS["manual_batch_norm"], manual
    assert manual == {student: 0 for student in manual}, manual       # the cheats and the root's reacher
    assert not (root / "results" / "forged.json").exists() and not (root / "submission" / "forged.ipynb").exists()
    assert not leftovers(first_uid, tag, tmp_path)     # no worker, stray process or scratch outlives its grading


def test_a_document_json_cannot_say_is_written_as_the_graders_failure_not_a_grade(tmp_path, monkeypatch):
    write_notebook(tmp_path / "submission", SETUP, name="batchnorm.ipynb")
    broken = _result(("a::test_x", "manual_batch_norm", float("nan"), 1.0, True, "passed"))
    monkeypatch.setattr("autograder.grade.grade_notebook", lambda *args, **kwargs: broken)
    status, doc = gradescope.run(tmp_path)
    written = json.loads((tmp_path / "results" / "results.json").read_text())
    assert status == 1 and written == doc and "score" not in written
    assert "results.json could not be written" in written["extra_data"]["grader_failure"]
