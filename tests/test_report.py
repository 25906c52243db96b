"""Mistakes as data and the class report (issue 16, parts 1 and 2).

Every mistake code the reference's tables can produce is listed (known_mistakes.mistake_codes) and in
the README; each synthetic student with a known mistake is graded by the real NumPy checks and its
result carries that mistake's code. A class assembled from those graded rows gets a report whose
mistakes.csv counts each mistake exactly, and a real browser (headless Chromium) finds the same
counts in report.html, with nothing on the console. The report builds for 300 students in
seconds, its size follows the distinct mistakes, and student markup stays text.
"""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autograder import known_mistakes
from autograder import synthetic_students as students
from autograder.classroom import grades, report, store, synthetic_results
from autograder.errors import Side
from autograder.exercises import BY_ID, EXERCISE_IDS, Kind
from autograder.results import Result

from conftest import check_cells

README = Path(__file__).resolve().parent.parent / "README.md"
NUMPY = tuple(e for e in students.NUMPY_RIGHT if e in BY_ID and BY_ID[e].kind is Kind.NUMPY)

# Mistakes no synthetic student makes, answered here: {code: (exercise, code of the function)}.
_RIGHT = students.NUMPY_RIGHT
EXTRA = {
    "manual_batch_norm.gamma_beta_swapped": (
        "manual_batch_norm", _RIGHT["manual_batch_norm"].replace("return gamma *", "return beta *")
                                                        .replace("+ beta\n", "+ gamma\n")),
    "manual_batch_norm.no_scale_shift": (
        "manual_batch_norm", _RIGHT["manual_batch_norm"].replace("return gamma *", "return 1.0 *")
                                                        .replace("+ beta\n", "+ 0.0\n")),
    "update_moving_statistics.fixed_momentum": (
        "update_moving_statistics", _RIGHT["update_moving_statistics"].replace("keep = momentum", "keep = 0.99")),
    "population_statistics.unweighted_averaged_variances": (   # np.mean over the batches, for both
        "population_statistics", _RIGHT["population_statistics"].replace(
            "return mean, var", "return batch_means.mean(axis=0), batch_vars.mean(axis=0)")),
}


def _expected_code(student) -> str | None:
    """The code a synthetic student's name says it makes (bn_ddof1 -> manual_batch_norm.ddof1)."""
    if not student.answers or not set(student.answers) <= set(NUMPY) or len(student.answers) != 1:
        return None
    (exercise,) = student.answers
    keys = [code.split(".", 1)[1] for code in known_mistakes.mistake_codes() if code.startswith(exercise + ".")]
    matching = [k for k in keys if student.name.endswith("_" + k)]
    return known_mistakes.mistake_code(exercise, max(matching, key=len)) if matching else None


def _cases() -> list:
    """[(name, exercise, code of the function, expected mistake code)] to grade."""
    cases = []
    for student in students.STUDENTS.values():
        code = _expected_code(student)
        if code:
            (exercise, answer), = student.answers.items()
            cases.append((student.name, exercise, answer, code))
    for code, (exercise, answer) in EXTRA.items():
        cases.append((code.replace(".", "__"), exercise, answer, code))
    return cases


def _grade(replaced: dict, tmp_path) -> list:
    """The NumPy checks' rows for a notebook of the right answers with ``replaced`` ({exercise: code})."""
    code = {**_RIGHT, **replaced}
    run, rows = check_cells(tmp_path, ["import numpy as np", *(code[e] for e in NUMPY)], NUMPY)
    assert run.findings.fault is None, run.findings.fault
    return rows


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{case name: (expected code, its exercise's rows)} plus "full_marks": every NumPy row of a
    right notebook. Cases of different exercises share a notebook (a mistake changes only its own
    exercise's rows), so a handful of sandboxed runs grade them all."""
    tmp = tmp_path_factory.mktemp("graded")
    cases = _cases()
    rounds = []
    for case in cases:
        for chosen in rounds:
            if case[1] not in chosen:
                chosen[case[1]] = case
                break
        else:
            rounds.append({case[1]: case})
    found = {"full_marks": (None, _grade({}, tmp))}
    for chosen in rounds:
        rows = _grade({exercise: answer for exercise, (_, _, answer, _) in chosen.items()}, tmp)
        for exercise, (name, _, _, code) in chosen.items():
            found[name] = (code, [r for r in rows if r.exercise == exercise])
    return found


def _student_result(graded, name) -> Result:
    """A whole result for one case: its exercise's graded rows, the right rows for the others."""
    code, rows = graded[name]
    exercise = rows[0].exercise if rows else None
    right = [r for r in graded["full_marks"][1] if r.exercise != exercise]
    return Result.graded([*right, *rows], timings={"total": 3.0 + len(name) / 10})


# --- 1. mistakes as data ---------------------------------------------------------------------------

def test_every_mistake_code_comes_from_a_table_key():
    codes = known_mistakes.mistake_codes()
    assert len(codes) >= 21
    for code, description in codes.items():
        exercise, key = code.split(".", 1)
        assert exercise in EXERCISE_IDS and re.fullmatch(r"[a-z0-9_]+", key), code
        assert description.strip(), code
    for exercise, tables in known_mistakes.MISTAKE_TABLES.items():
        for table in tables():
            assert {known_mistakes.mistake_code(exercise, key) for key in table} <= set(codes)


def test_the_readme_lists_every_mistake_code():
    codes = known_mistakes.mistake_codes()
    text = README.read_text(encoding="utf-8")
    listed = re.search(r"<!-- mistake codes -->(.*?)<!-- /mistake codes -->", text, re.S)
    assert listed, "the README's list of mistake codes (between <!-- mistake codes --> markers) is missing"
    assert re.findall(r"`([a-z_]+\.[a-z0-9_]+)`", listed.group(1)) == list(codes), (
        "the README's list of mistake codes differs from known_mistakes.mistake_codes(): "
        "print(autograder.classroom.report.readme_codes()) gives it")


@pytest.mark.slow
def test_each_synthetic_student_carries_the_code_of_its_mistake(graded):
    cases = _cases()
    assert len(cases) >= 22          # every student with a named NumPy mistake, and EXTRA
    named = {code for _, _, _, code in cases}
    assert named >= set(EXTRA) and "manual_batch_norm.ddof1" in named
    for name, _exercise, _, code in cases:
        _, rows = graded[name]
        carried = {r.mistake for r in rows if r.mistake}
        assert code in carried, (name, code, [(r.id, r.mistake, r.message) for r in rows if not r.passed])
        for row in rows:
            if row.mistake:
                assert not row.passed and row.mistake in known_mistakes.mistake_codes()
                assert row.message, row
    assert not any(r.mistake for r in graded["full_marks"][1])


def test_the_code_survives_results_json(graded):
    result = _student_result(graded, "bn_ddof1")
    doc = json.loads(result.to_json())
    assert {row["mistake"] for row in doc["checks"]} == {None, "manual_batch_norm.ddof1"}
    assert Result.from_json(result.to_json()).checks == result.checks


def test_old_rows_without_the_code_read_as_none(graded):
    doc = json.loads(_student_result(graded, "bn_ddof1").to_json())
    for row in doc["checks"]:
        del row["mistake"]                                       # written before the field existed
    assert all(c.mistake is None for c in Result.from_dict(doc).checks)


def test_a_plain_assertion_carries_no_code():
    from autograder.checks import answers
    from autograder.grade import check_failure, failure_mistake
    made = answers.MistakeMade("variance computed with ddof=1", "manual_batch_norm.ddof1")
    assert check_failure(made) == ("variance computed with ddof=1", Side.STUDENT)
    assert failure_mistake(made) == "manual_batch_norm.ddof1"
    assert failure_mistake(AssertionError("layer 3 should be ReLU")) is None
    assert failure_mistake(RuntimeError("a bug")) is None


# --- 2. the report -----------------------------------------------------------------------------------

NASTY = ("<img src=x onerror=alert(1)>", "=HYPERLINK(\"evil\")", "+cmd", "@SUM(1)", "-2+3")


@pytest.fixture(scope="module")
def class_report(graded, tmp_path_factory):
    """A course whose grade-class/ holds a class built from the graded cases: case i handed in by
    1 + i % 3 students, plus full marks, students' and grader's errors, and students whose names
    are markup or formulas. Returns (course, {code: expected count}, written)."""
    course = tmp_path_factory.mktemp("course")
    expected, results = {}, {}
    for i, name in enumerate(sorted(n for n in graded if n != "full_marks")):
        for copy in range(1 + i % 3):
            results[f"{name}-{copy}"] = _student_result(graded, name)
        for code in {r.mistake for r in graded[name][1] if r.mistake}:
            expected[code] = expected.get(code, 0) + 1 + i % 3
    for nasty in NASTY:
        results[nasty] = _student_result(graded, "bn_ddof1")
        expected["manual_batch_norm.ddof1"] += 1
    results["zz-full"] = _student_result(graded, "full_marks")
    results["zz-corrupt"] = Result.failed("the notebook is not valid JSON: <b>bold</b> =1+1", Side.STUDENT)
    results["zz-sandbox"] = Result.failed("the sandboxed worker could not start", Side.GRADER)
    for student, result in results.items():
        path = store.result_path(course, student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json(), encoding="utf-8")
    written = report.write_report(course)
    return course, expected, written


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_mistakes_csv_counts_each_mistake_exactly(class_report):
    course, expected, written = class_report
    rows = _csv(written.mistakes)
    assert list(rows[0]) == list(report.MISTAKES_COLUMNS)
    assert {r["mistake"]: int(r["count"]) for r in rows} == expected
    counts = [int(r["count"]) for r in rows]
    assert counts == sorted(counts, reverse=True)                 # ranked by how many made it
    for r in rows:
        assert r["exercise"] == r["mistake"].split(".")[0]
        assert r["description"] == known_mistakes.mistake_codes()[r["mistake"]]
        assert len(r["students"].split("; ")) == int(r["count"])
    ddof1 = next(r for r in rows if r["mistake"] == "manual_batch_norm.ddof1")
    assert ddof1["students"].startswith("'+cmd; ")        # a cell a spreadsheet shows as text
    names = ddof1["students"].removeprefix("'").split("; ")
    assert set(NASTY) <= set(names) and "bn_ddof1-0" in names
    for r in rows:
        assert not any(cell.startswith(grades.FORMULA_LEADING) for cell in r.values()), r


def test_checks_csv_gives_every_checks_pass_rate(class_report, graded):
    _, _, written = class_report
    rows = _csv(written.checks)
    assert list(rows[0]) == list(report.CHECKS_COLUMNS)
    ids = [r.id for r in graded["full_marks"][1]]
    assert [r["check"] for r in rows] == ids
    graded_count = len(written.data.graded)
    ddof = next(r for r in rows if r["check"] == "manual_batch_norm::test_uses_the_biased_variance")
    made = sum(1 for res in written.data.graded.values()
               if any(c.id == ddof["check"] and not c.passed for c in res.checks))
    assert float(ddof["pass_rate"]) == pytest.approx(1 - made / graded_count, abs=1e-3)
    assert all(0.0 <= float(r["pass_rate"]) <= 1.0 for r in rows)


def test_the_page_escapes_student_markup(class_report):
    _, _, written = class_report
    page = written.report.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script" not in page


def test_the_page_splits_errors_by_side(class_report):
    _, _, written = class_report
    page = written.report.read_text(encoding="utf-8")
    assert 'data-side="student"' in page and 'data-side="grader"' in page
    assert "the sandboxed worker could not start" in page


def test_the_page_needs_nothing_from_the_network(class_report):
    _, _, written = class_report
    page = written.report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 4          # the plots, embedded
    assert "http://" not in page and "https://" not in page     # nothing to fetch


# --- in a real browser -----------------------------------------------------------------------------

def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0")


def open_in_chromium(page: Path, tmp_path: Path, *extra) -> subprocess.CompletedProcess:
    """Chromium headless on ``page``: its stdout (the DOM with --dump-dom) and stderr (its log, where the
    page's console messages appear as ":CONSOLE" lines)."""
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *extra,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})


class _Counts(HTMLParser):
    """{data-mistake: the text of its row's "count" cell} from a DOM."""

    def __init__(self):
        super().__init__()
        self.counts, self.row, self.in_count = {}, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-mistake" in attrs:
            self.row = attrs["data-mistake"]
        if tag == "td" and self.row and "count" in (attrs.get("class") or "").split():
            self.in_count = True

    def handle_endtag(self, tag):
        if tag == "td":
            self.in_count = False
        if tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.in_count and self.row:
            self.counts[self.row] = self.counts.get(self.row, "") + data.strip()


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (Debian package `chromium`; "
                                               "`make setup` installs it where it runs as root with apt)")
def test_the_report_renders_in_chromium_as_the_csv_counts(class_report, tmp_path):
    _, expected, written = class_report
    shown = open_in_chromium(written.report, tmp_path, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = shown.stdout
    assert "what the class got wrong" in dom and "</html>" in dom
    parser = _Counts()
    parser.feed(dom)
    from_csv = {r["mistake"]: r["count"] for r in _csv(written.mistakes)}
    assert parser.counts == from_csv
    assert {k: int(v) for k, v in parser.counts.items()} == expected
    assert "<img src=x onerror" not in dom                        # the student's markup stayed text
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


# --- scale --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_300_student_report_scales_with_mistakes_not_students(tmp_path):
    sizes = {}
    for n in (300, 1200):
        course = tmp_path / str(n)
        results = synthetic_results.synthetic_results(n, seed=n)
        started = time.monotonic()
        written = report.write_report(course, results=results)
        seconds = time.monotonic() - started
        if n == 300:
            assert seconds <= 10, f"the report of 300 students took {seconds:.1f} s"
        sizes[n] = written.report.stat().st_size
        assert len(written.data.mistakes) <= len(known_mistakes.mistake_codes())
    assert sizes[1200] < 1.25 * sizes[300], sizes         # 4x the students, about the same page


def test_inert_makes_only_formula_leading_text_plain():
    assert grades.inert("=1+1") == "'=1+1" and grades.inert("@x") == "'@x" and grades.inert("-x") == "'-x"
    assert grades.inert("+x") == "'+x" and grades.inert("\tx") == "'\tx"
    assert grades.inert("ann") == "ann" and grades.inert(3) == 3 and grades.inert(0.5) == 0.5
    text = report.csv_text(("a", "b"), [["=cmd", 2]])
    assert text == "a,b\n'=cmd,2\n"


@pytest.mark.slow
def test_report_command_writes_the_three_files(class_report, capsys):
    course, _, _ = class_report
    from autograder.__main__ import main
    assert main(["report", "batchnorm", "--course-dir", str(course)]) == 0
    out = capsys.readouterr().out
    assert "distinct mistakes" in out
    for name in (report.REPORT_NAME, report.MISTAKES_CSV, report.CHECKS_CSV):
        assert (course / store.OUTPUT_DIR / name).is_file()
    assert main(["report", "nope", "--course-dir", str(course)]) == 2


# --- grade-class writes it, graded by the real grader -------------------------------------------

@pytest.mark.slow
def test_grade_class_writes_the_report_with_exact_counts(tmp_path, shared_grader_cache):
    from autograder.classroom import classrun
    from autograder.settings import Settings
    chosen = ("full_marks", "bn_ddof1", "bn_per_sample", "backward_no_variance_path", "moving_swapped_momentum",
              "inference_var_as_std", "population_unweighted", "corrupt")
    course = tmp_path / "course"
    for name in chosen:
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / name / "batchnorm" / "batchnorm.ipynb")
    # the session's cache (conftest.shared_grader_cache): the solution's architecture is trained once a session
    outcome = classrun.run(course, jobs=2, progress_stream=io.StringIO(),
                           settings=Settings(cache_dir=shared_grader_cache))
    assert not outcome.grader_errors, [r.message for r in outcome.rows if r.grader_fault]
    assert outcome.report == course / store.OUTPUT_DIR / report.REPORT_NAME
    counts = {r["mistake"]: r["students"] for r in _csv(course / store.OUTPUT_DIR / report.MISTAKES_CSV)}
    for name in chosen:
        code = _expected_code(students.STUDENTS[name])
        if code:
            assert name in counts[code].split("; "), (name, code, counts)
    result = Result.from_json(store.result_path(course, "full_marks").read_text())
    assert set(result.architectures) == {"build_model_with_bn", "build_modern_cnn"}
