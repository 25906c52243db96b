"""Canvas: grades.csv read back, the gradebook CSV Canvas imports, and the push through Canvas' REST API.

No Canvas instance exists here. The push runs against ``CanvasStandIn``, a local HTTP server of exactly
the endpoints it calls, written from Canvas' REST API documentation (Courses: get a single course,
search_users; Assignments: get a single assignment; Submissions: list assignment submissions, grade or
comment on multiple submissions (update_grades, which answers a Progress); Progress: query progress),
with the documented objects' fields the push reads. The gradebook export below is written by hand from
Canvas' guides: the header, the padded "Points Possible" row, the read-only computed columns.
"""

import csv
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from urllib.parse import parse_qs, urlsplit

import pytest

from autograder.__main__ import main as autograder_main
from autograder.classroom import grades, store
from autograder.classroom.written import Marked, WrittenGrade, WrittenScores
from autograder.errors import Side
from autograder.exercises import EXERCISES, MANUAL_POINTS, TOTAL_POINTS, WRITTEN_ANSWERS
from autograder.platforms import canvas, canvas_push
from autograder.results import CheckResult, Result, format_points

MAX = TOTAL_POINTS + MANUAL_POINTS
TOKEN = "test-token-123"


def result_with(points_lost: float) -> Result:
    """A graded result: full marks but for ``points_lost`` off the first exercise, whose check says why."""
    checks = [CheckResult(f"{e.id}::a", e.id, e.points, e.points, True, "") for e in EXERCISES]
    first = EXERCISES[0]
    checks[0] = CheckResult(f"{first.id}::a", first.id, first.points - points_lost, first.points,
                            points_lost == 0, "" if points_lost == 0 else "the mean is taken over the wrong axis")
    return Result(checks)


def written(points=None) -> WrittenScores:
    """Every written answer graded by a person (``points`` each, default full), or all pending (``"pending"``)."""
    if points == "pending":
        return WrittenScores()
    return WrittenScores(MappingProxyType({w.id: WrittenGrade(Marked.PERSON, w.points if points is None else points)
                                          for w in WRITTEN_ANSWERS}))


def class_rows() -> list:
    """alice graded (1 point off), bob's written answers pending, carol not graded because of the grader,
    dave's notebook unreadable (his error: 0 autograded, written answers 0), erin graded (not in Canvas)."""
    def row(student, result, answers):         # the row's message as grade-class writes it
        return grades.Row.of(student, result, store.message_for([], result), written=answers)
    return [row("alice", result_with(1.0), written()), row("bob", result_with(0.0), written("pending")),
            row("carol", Result.failed("the sandbox could not start", Side.GRADER), written()),
            row("dave", Result.failed("not a notebook", Side.STUDENT), written(0.0)),
            row("erin", result_with(0.5), written())]


ALICE, BOB_AUTO, ERIN = MAX - 1.0, TOTAL_POINTS, MAX - 0.5


@pytest.fixture
def course(tmp_path):
    """A course folder with grade-class's grades.csv and results of the rows above."""
    grades.write_csv(class_rows(), tmp_path / "grades.csv")
    for row, result in zip(class_rows(), (result_with(1.0), result_with(0.0), None, None, result_with(0.5)),
                           strict=True):
        if result is not None:
            store.write_result(tmp_path, row.student, result, notes=[], key={}, written=row.written)
    return tmp_path


# --- grades.csv read back -------------------------------------------------------------------------------

def test_grades_csv_reads_back_what_grade_class_wrote(course):
    rows = {g.student: g for g in grades.read_csv(course / "grades.csv")}
    assert list(rows) == ["alice", "bob", "carol", "dave", "erin"]
    assert (rows["alice"].total, rows["alice"].max_total, rows["alice"].status) == (ALICE, MAX, "graded")
    assert rows["bob"].pending and rows["bob"].total is None and rows["bob"].auto == TOTAL_POINTS
    assert rows["carol"].grader_fault and rows["carol"].total is None and not rows["carol"].pending
    assert not rows["dave"].grader_fault and rows["dave"].total == 0.0 and rows["dave"].status == "error"


def test_with_written_answers_pending_the_side_of_an_error_comes_from_its_message():
    """Both rows have a blank total and a blank manual: grades.csv's error_side tells them apart."""
    failures = [("dave", Result.failed("not a notebook", Side.STUDENT)),
                ("carol", Result.failed("the sandbox could not start", Side.GRADER))]
    text = grades.grades_csv_text([grades.Row.of(s, r, store.message_for(["graded batchnorm-Copy1.ipynb"], r))
                                   for s, r in failures])
    carol, dave = grades.parse_csv(text)
    assert dave.total is None and dave.manual is None and dave.pending and not dave.grader_fault
    assert carol.total is None and carol.manual is None and carol.grader_fault and not carol.pending
    assert canvas.left_out(carol, autograded_only=True) == canvas.GRADER_ERROR
    assert canvas.canvas_points(dave, autograded_only=True) == 0.0


def test_a_grader_error_stays_one_when_the_hand_in_s_notes_fill_the_message():
    """A student who handed in many notebooks has a long note; the row's message is bounded: the grader's
    error must still be read as the grader's (never a 0 with --autograded-only)."""
    carol = Result.failed("the sandbox could not start", Side.GRADER)
    notes = [f"90 notebooks handed in; graded batchnorm.ipynb (not graded: {', '.join(['copy.ipynb'] * 800)})"]
    (row,) = grades.parse_csv(grades.grades_csv_text([grades.Row.of("carol", carol, store.message_for(notes, carol))]))
    assert row.grader_fault and canvas.canvas_points(row, autograded_only=True) is None


@pytest.mark.parametrize(("column", "cell", "says"), [
    ("total", "nan", "not a finite number"), ("auto", "-1", "not a finite number"),
    ("total", str(MAX + 1), "above its maximum"), ("status", "done", "none of"), ("auto", "ten", "not a number"),
])
def test_a_malformed_grades_csv_is_a_clear_error(course, column, cell, says):
    rows = list(csv.DictReader(io.StringIO((course / "grades.csv").read_text())))
    rows[0][column] = cell
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with pytest.raises(grades.GradesFileError, match=f"line 2: {column}.*{says}"):
        grades.parse_csv(buf.getvalue())


def test_grades_csv_without_its_columns_or_with_a_student_twice_is_refused():
    with pytest.raises(grades.GradesFileError, match="no column"):
        grades.parse_csv("student,points\nalice,3\n")
    text = grades.grades_csv_text(class_rows()[:1])
    with pytest.raises(grades.GradesFileError, match="twice"):
        grades.parse_csv(text + text.split("\n", 1)[1])


# --- export canvas --------------------------------------------------------------------------------------

READ_ONLY = ("Assignments Current Score", "Assignments Final Score", "Current Points", "Final Points",
             "Current Score", "Unposted Current Score", "Final Score", "Unposted Final Score")


def gradebook_export(*, with_column: bool = True, extra_student=None) -> str:
    """A Canvas gradebook export as Canvas writes it: identity columns, an earlier assignment, this one
    ("Batch Normalization (4242)", bob's cell entered by hand, posted manually) unless ``with_column`` is
    False, the read-only computed columns; the "Manual Posting" row; the padded Points Possible row; the
    students, Canvas' test student (no login) and frank, who has no row in grades.csv."""
    ours = ["Batch Normalization (4242)"] if with_column else []
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (4101)", *ours, *READ_ONLY]
    lines = [header, ["    Points Possible", "", "", "", "", "10.00", *([format_points(MAX)] if ours else []),
                      *["(read only)"] * len(READ_ONLY)]]
    if ours:        # this assignment posts grades manually: Canvas writes a row saying so above Points Possible
        lines.insert(1, ["", "", "", "", "", "", "Manual Posting", *[""] * len(READ_ONLY)])
    students = [("Smith, Alice", "101", "S-001", "alice", "", "9.00"),
                ("Jones, Bob", "102", "S-002", "BOB", "7", "8.00"),     # login in capitals: matched regardless
                ("Lee, Carol", "103", "S-003", "carol", "", "10.00"),
                ("Khan, Dave", "104", "S-004", "dave", "", "4.00"),
                ("Ng, Frank", "105", "S-005", "frank", "12", "6.00"),
                ("Student, Test", "199", "", "", "", ""), *([extra_student] if extra_student else [])]
    for name, user_id, sis, login, ours_cell, homework in students:
        lines.append([name, user_id, sis, login, "Section A", homework, *([ours_cell] if ours else []),
                      *["50.00"] * len(READ_ONLY)])
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    return "\ufeff" + buf.getvalue()        # Canvas' export begins with a byte order mark


def read_import(path) -> list:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def export(course, tmp_path, *extra, text=None, capsys=None):
    (tmp_path / "export.csv").write_text(text or gradebook_export(), encoding="utf-8")
    status = autograder_main(["export", "canvas", "--gradebook", str(tmp_path / "export.csv"),
                              "--output", str(tmp_path / "import.csv"), "--course-dir", str(course), *extra])
    return status, read_import(tmp_path / "import.csv")


def test_export_round_trip_fills_in_the_assignment_column_and_lists_the_unmatched(course, tmp_path, capsys):
    status, rows = export(course, tmp_path)
    out, err = capsys.readouterr()
    assert status == canvas.EXIT_LEFT_OUT
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Batch Normalization (4242)"]
    assert rows[1] == ["    Points Possible", "", "", "", "", format_points(MAX)]
    cells = {row[1]: row[-1] for row in rows[2:]}
    assert cells == {"101": format_points(ALICE),
                     "102": "7",          # bob: written answers pending, the export's cell kept
                     "103": "",           # carol: the grader's error, blank, never 0
                     "104": "0",          # dave: his own error, a grade
                     "105": "12",         # frank: only in Canvas, untouched
                     "199": ""}
    assert re.search(r"grader-side error.*\(1\): carol", err)
    assert re.search(r"written answers not graded yet \(1\): bob", err)
    assert re.search(r"in grades.csv, not matched in Canvas \(1\): erin", err)
    assert re.search(r"in Canvas, no row in grades.csv \(2\): Ng, Frank; Student, Test", err)
    assert "Batch Normalization (4242)" in out and "2 grades" in out


def test_export_reads_a_semicolon_separated_export_with_decimal_commas(course, tmp_path, capsys):
    """Canvas writes ";" and "9,00" for a user with semicolon separators (or a decimal-comma locale)."""
    rows = list(csv.reader(io.StringIO(gradebook_export().lstrip("\ufeff"))))
    next(r for r in rows if r[0] == "    Points Possible")[6] = "97.00"      # not the assignment's maximum
    buf = io.StringIO()
    csv.writer(buf, delimiter=";").writerows([[c.replace(".", ",") for c in row] for row in rows])
    status, written = export(course, tmp_path, text="\ufeff" + buf.getvalue())
    assert status == canvas.EXIT_LEFT_OUT and written[0][-1] == "Batch Normalization (4242)"
    assert {row[1]: row[-1] for row in written[2:]}["101"] == format_points(ALICE)
    assert "is out of 97 points, grades.csv's of" in capsys.readouterr().err


def test_export_keeps_an_excused_or_unassigned_cell_and_lists_it(course, tmp_path, capsys):
    """Canvas' export writes EX for an excused student and N/A where the assignment is not assigned to one."""
    text = gradebook_export().replace(",alice,Section A,9.00,,", ",alice,Section A,9.00,EX,").replace(
        ",dave,Section A,4.00,,", ",dave,Section A,4.00,N/A,")
    status, rows = export(course, tmp_path, text=text)
    cells = {row[1]: row[-1] for row in rows[2:]}
    assert (cells["101"], cells["104"], status) == ("EX", "N/A", canvas.EXIT_LEFT_OUT)
    err = capsys.readouterr().err
    assert "excused in Canvas (EX), kept (1): alice" in err and "not assigned to them in Canvas (N/A) (1): dave" in err


def test_export_adds_the_column_when_canvas_has_none(course, tmp_path):
    status, rows = export(course, tmp_path, text=gradebook_export(with_column=False))
    assert rows[0][-1] == "Batch Normalization" and rows[1][-1] == format_points(MAX)
    cells = {row[1]: row[-1] for row in rows[2:]}
    assert (cells["101"], cells["102"], cells["103"], cells["104"]) == (format_points(ALICE), "", "", "0")


def test_export_autograded_only_writes_the_autograded_points_out_of_their_maximum(course, tmp_path):
    status, rows = export(course, tmp_path, "--autograded-only", "--column", "BN autograded",
                          text=gradebook_export(with_column=False))
    assert rows[0][-1] == "BN autograded" and rows[1][-1] == format_points(TOTAL_POINTS)
    cells = {row[1]: row[-1] for row in rows[2:]}
    assert (cells["101"], cells["102"], cells["103"]) == (format_points(TOTAL_POINTS - 1), format_points(BOB_AUTO), "")


def test_export_matches_by_another_identity(course, tmp_path, capsys):
    text = gradebook_export().replace(",S-001,alice,", ",alice,someone,")
    status, rows = export(course, tmp_path, "--match", "sis_user_id", text=text)
    cells = {row[1]: row[-1] for row in rows[2:]}
    assert cells["101"] == format_points(ALICE) and cells["103"] == ""    # S-003 is no nbgrader id


def test_export_cells_cannot_become_formulas(course, tmp_path):
    evil = ("=HYPERLINK(\"http://x\"),", "106", "S-006", "@SUM(A1)", "", "1.00")
    status, rows = export(course, tmp_path, text=gradebook_export(extra_student=evil))
    row = next(r for r in rows if r[1] == "106")
    assert row[0].startswith("'=") and row[3] == "'@SUM(A1)"


def test_export_refuses_a_file_that_is_not_a_gradebook_export(course, tmp_path, capsys):
    (tmp_path / "export.csv").write_text("Name,Score\nalice,3\n")
    status = autograder_main(["export", "canvas", "--gradebook", str(tmp_path / "export.csv"),
                              "--output", str(tmp_path / "import.csv"), "--course-dir", str(course)])
    assert status == 2 and "no 'Student' column" in capsys.readouterr().err
    assert not (tmp_path / "import.csv").exists()


# --- canvas push, against a local stand-in of Canvas' API -----------------------------------------------

COURSE_ID, ASSIGNMENT_ID = 77, 4242


class CanvasStandIn:
    """Canvas' REST API for one course and assignment, only the endpoints canvas push calls, as Canvas'
    documentation describes them: JSON objects, pages of ``per_page`` with a ``Link: rel="next"``
    header, form-encoded POST bodies, a Progress that is queued until first queried. Records every request."""

    def __init__(self, students):
        self.users = [{"id": uid, "name": name, "sortable_name": name, "short_name": name, "sis_user_id": sis,
                       "login_id": login} for uid, name, sis, login in students]
        self.teacher = {"id": 1, "name": "Teacher", "sortable_name": "Teacher", "sis_user_id": None,
                        "login_id": "alice"}   # a teacher whose login is a student's id: students only are asked
        self.scores = {}                       # {user id: score}
        self.excused = set()
        self.late_deduction = {}               # {user id: points a late policy takes off the entered score}
        self.missing = {}                      # {user id: the missing-submission policy's automatic grade}
        self.comments = {}                     # {user id: [text]}
        self.requests = []                     # (method, path, query or form, Authorization header)
        self.progress = {}
        self.fail_updates = False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                stand_in.handle(self, "GET")

            def do_POST(self):
                stand_in.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def posts(self) -> list:
        return [r for r in self.requests if r[0] == "POST"]

    def submission(self, user) -> dict:
        uid = user["id"]
        entered = self.scores.get(uid, self.missing.get(uid))     # as graded, or the missing policy's grade
        deducted = self.late_deduction.get(uid) if entered is not None else None
        score = None if entered is None else max(0.0, entered - (deducted or 0.0))
        return {"id": 9000 + uid, "user_id": uid, "assignment_id": ASSIGNMENT_ID, "score": score,
                "grade": None if score is None else format_points(score), "entered_score": entered,
                "entered_grade": None if entered is None else format_points(entered),
                "points_deducted": deducted, "late": uid in self.late_deduction,
                "late_policy_status": "missing" if uid in self.missing and uid not in self.scores else None,
                "missing": uid in self.missing and uid not in self.scores, "excused": uid in self.excused,
                "workflow_state": "graded" if score is not None else "unsubmitted"}

    def handle(self, request, method):
        url = urlsplit(request.path)
        if method == "POST":
            body = request.rfile.read(int(request.headers.get("Content-Length") or 0)).decode()
            fields = parse_qs(body, keep_blank_values=True)
        else:
            fields = parse_qs(url.query, keep_blank_values=True)
        self.requests.append((method, url.path, fields, request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(request, 401, {"errors": [{"message": "Invalid access token."}]})
        base = f"/api/v1/courses/{COURSE_ID}"
        assignment = f"{base}/assignments/{ASSIGNMENT_ID}"
        if method == "GET" and url.path == base:
            return self.reply(request, 200, {"id": COURSE_ID, "name": "Deep Learning", "course_code": "DL"})
        if method == "GET" and url.path == assignment:
            return self.reply(request, 200, {"id": ASSIGNMENT_ID, "course_id": COURSE_ID,
                                             "name": "Batch Normalization", "points_possible": MAX,
                                             "grading_type": "points"})
        if method == "GET" and url.path == f"{base}/search_users":
            users = self.users if fields.get("enrollment_type[]") == ["student"] else [self.teacher, *self.users]
            return self.page(request, url, fields, users)
        if method == "GET" and url.path == f"{assignment}/submissions":
            return self.page(request, url, fields, [self.submission(u) for u in self.users])
        if method == "POST" and url.path == f"{assignment}/submissions/update_grades":
            number = len(self.progress) + 1
            self.progress[number] = {"id": number, "context_id": COURSE_ID, "context_type": "Course",
                                     "tag": "submissions_update", "completion": 0, "workflow_state": "queued",
                                     "message": None, "url": f"{self.url}/api/v1/progress/{number}",
                                     "grade_data": fields}
            return self.reply(request, 200, {k: v for k, v in self.progress[number].items() if k != "grade_data"})
        match = re.fullmatch(r"/api/v1/progress/(\d+)", url.path)
        if method == "GET" and match and int(match[1]) in self.progress:
            progress = self.progress[int(match[1])]
            if progress["workflow_state"] == "queued":       # the job runs: Canvas applies the grades
                self.apply(progress)
            return self.reply(request, 200, {k: v for k, v in progress.items() if k != "grade_data"})
        return self.reply(request, 404, {"errors": [{"message": "The specified resource does not exist."}]})

    def apply(self, progress):
        if self.fail_updates:
            progress.update(workflow_state="failed", message="Something went wrong")
            return
        for name, (value,) in progress["grade_data"].items():
            found = re.fullmatch(r"grade_data\[(\d+)\]\[(posted_grade|text_comment)\]", name)
            uid = int(found[1])
            if found[2] == "posted_grade":
                self.scores[uid] = float(value)
            else:
                self.comments.setdefault(uid, []).append(value)
        progress.update(workflow_state="completed", completion=100)

    def page(self, request, url, fields, items):
        per_page = int(fields.get("per_page", ["10"])[0])
        page = int(fields.get("page", ["1"])[0])
        headers = {}
        if page * per_page < len(items):
            query = "&".join(f"{k}={v}" for k, vs in fields.items() if k != "page" for v in vs)
            headers["Link"] = f'<{self.url}{url.path}?{query}&page={page + 1}>; rel="next"'
        self.reply(request, 200, items[(page - 1) * per_page:page * per_page], headers)

    def reply(self, request, status, doc, headers=None):
        data = json.dumps(doc).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)


STUDENTS = [(11, "Smith, Alice", "S-001", "alice"), (12, "Jones, Bob", "S-002", "bob"),
            (13, "Lee, Carol", "S-003", "carol"), (14, "Khan, Dave", "S-004", "dave"),
            (15, "Ng, Frank", "S-005", "frank")]


@pytest.fixture
def stand_in(monkeypatch):
    server = CanvasStandIn(STUDENTS)
    monkeypatch.setenv(canvas_push.TOKEN_VARIABLE, TOKEN)
    monkeypatch.setattr(canvas_push, "PROGRESS_POLL", 0.01)
    yield server
    server.server.shutdown()
    server.server.server_close()


def push(stand_in, course, *extra) -> int:
    return autograder_main(["canvas", "push", "batchnorm", "--url", stand_in.url, "--course", str(COURSE_ID),
                            "--assignment", str(ASSIGNMENT_ID), "--course-dir", str(course), *extra])


pytestmark = pytest.mark.filterwarnings("ignore:Canvas may respond unexpectedly:UserWarning")


def test_dry_run_prints_the_plan_and_sends_nothing(stand_in, course, capsys):
    assert push(stand_in, course, "--dry-run") == canvas.EXIT_LEFT_OUT
    out, err = capsys.readouterr()
    assert stand_in.posts() == [] and stand_in.scores == {}
    assert f"new       alice: - -> {format_points(ALICE)}" in out and "new       dave: - -> 0" in out
    assert "2 new, 0 changed" in out and "dry run: 2 grades would be posted" in out
    assert re.search(r"grader-side error.*: carol", err) and "not matched in Canvas (1): erin" in err
    assert not canvas_push.pushed_path(course).exists()


def test_push_posts_what_differs_in_one_bulk_update_then_nothing(stand_in, course, capsys):
    assert push(stand_in, course, "--comments") == canvas.EXIT_LEFT_OUT      # carol, bob, erin, frank left out
    (post,) = stand_in.posts()
    method, path, form, authorization = post
    assert path == f"/api/v1/courses/{COURSE_ID}/assignments/{ASSIGNMENT_ID}/submissions/update_grades"
    assert authorization == f"Bearer {TOKEN}"
    assert {k for k in form if k.endswith("[posted_grade]")} == {"grade_data[11][posted_grade]",
                                                                 "grade_data[14][posted_grade]"}
    assert form["grade_data[11][posted_grade]"] == [format_points(ALICE)]
    assert form["grade_data[14][posted_grade]"] == ["0"]
    comment = form["grade_data[11][text_comment]"][0]
    assert "the mean is taken over the wrong axis" in comment and f"{format_points(TOTAL_POINTS - 1)} /" in comment
    assert "grade_data[14][text_comment]" not in form        # dave has no results.json here: grade only
    assert all("[13]" not in k for k in form)                # carol's grader error is never posted
    assert stand_in.scores == {11: ALICE, 14: 0.0}
    assert any(r[1] == "/api/v1/progress/1" for r in stand_in.requests)
    recorded = json.loads(canvas_push.pushed_path(course).read_text())
    assert recorded == {f"{stand_in.url}/courses/{COURSE_ID}/assignments/{ASSIGNMENT_ID}": {"11": ALICE, "14": 0.0}}
    capsys.readouterr()

    assert push(stand_in, course, "--comments") == canvas.EXIT_LEFT_OUT
    assert len(stand_in.posts()) == 1                        # the second run posts nothing
    assert "0 new, 0 changed, 2 unchanged" in capsys.readouterr().out


def test_a_changed_grade_is_posted_and_a_hand_edit_is_kept_with_a_warning(stand_in, course, capsys):
    push(stand_in, course)
    stand_in.scores[14] = 3.0                                 # someone grades dave by hand in Canvas
    rows = class_rows()
    rows[0] = grades.Row.of("alice", result_with(2.0), written=written())      # alice regraded
    grades.write_csv(rows, course / "grades.csv")
    capsys.readouterr()
    push(stand_in, course)
    out, err = capsys.readouterr()
    assert f"changed   alice: {format_points(ALICE)} -> {format_points(MAX - 2)}" in out
    assert "WARNING: dave's grade was changed by hand in Canvas (Canvas holds 3, last pushed 0)" in err
    form = stand_in.posts()[-1][2]
    assert set(form) == {"grade_data[11][posted_grade]"}
    assert stand_in.scores == {11: MAX - 2, 14: 3.0}

    push(stand_in, course, "--overwrite-hand-edits")
    assert set(stand_in.posts()[-1][2]) == {"grade_data[14][posted_grade]"} and stand_in.scores[14] == 0.0


def test_a_late_policy_s_deduction_is_no_hand_edit(stand_in, course, capsys):
    """Canvas' score is the entered score less the late policy's deduction; what was pushed is the entered one."""
    stand_in.late_deduction[11] = 2.0                     # alice handed in late in Canvas: 2 points off
    push(stand_in, course)
    assert stand_in.submission(stand_in.users[0])["score"] == ALICE - 2.0
    capsys.readouterr()
    assert push(stand_in, course) == canvas.EXIT_LEFT_OUT
    out, err = capsys.readouterr()
    assert len(stand_in.posts()) == 1 and "hand" not in err and "0 new, 0 changed, 2 unchanged" in out


def test_the_missing_policy_s_automatic_grade_is_no_hand_edit(stand_in, course, capsys):
    """Canvas' missing-submission policy grades by itself (late_policy_status "missing"): no person gave that."""
    stand_in.missing[11] = 0.0                            # alice handed in through nbgrader, not Canvas
    push(stand_in, course)
    out, err = capsys.readouterr()
    assert "hand" not in err and "2 new" in out and len(stand_in.posts()) == 1
    assert stand_in.submission(stand_in.users[0])["score"] == ALICE


def test_a_grade_canvas_had_before_any_push_is_a_hand_edit(stand_in, course, capsys):
    stand_in.scores[11] = 5.0
    stand_in.excused.add(14)
    push(stand_in, course)
    err = capsys.readouterr().err
    assert "alice's grade was changed by hand" in err and "dave's grade was changed by hand in Canvas (excused" in err
    assert stand_in.posts() == []


def test_logins_canvas_does_not_send_are_said_to_be_missing(stand_in, course, capsys):
    """Canvas' User has login_id only for a caller allowed to see it (Api::V1::User#user_json)."""
    for user in stand_in.users:
        del user["login_id"]
    assert push(stand_in, course) == canvas.EXIT_LEFT_OUT and stand_in.posts() == []
    assert "Canvas sent no login_id for any student" in capsys.readouterr().err


def test_a_failed_update_records_nothing(stand_in, course, capsys):
    stand_in.fail_updates = True
    assert push(stand_in, course) == 1
    assert "failed: Something went wrong" in capsys.readouterr().err
    assert not canvas_push.pushed_path(course).exists()


def test_push_needs_the_token_from_the_environment(stand_in, course, monkeypatch, capsys):
    monkeypatch.delenv(canvas_push.TOKEN_VARIABLE)
    assert push(stand_in, course) == 2
    assert canvas_push.TOKEN_VARIABLE in capsys.readouterr().err and stand_in.requests == []


def test_push_refuses_plain_http_to_another_machine(stand_in, course, capsys):
    status = autograder_main(["canvas", "push", "batchnorm", "--url", "http://canvas.example.edu", "--course", "1",
                              "--assignment", "2", "--course-dir", str(course)])
    assert status == 2 and "plain http" in capsys.readouterr().err


def test_the_stand_in_pages_like_canvas(stand_in, course, monkeypatch):
    """More students than a page: canvas push follows the Link header (canvasapi asks 100 a page; here 2)."""
    import canvasapi.paginated_list as paginated

    original = paginated.PaginatedList.__init__

    def small_pages(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._first_params["per_page"] = 2

    monkeypatch.setattr(paginated.PaginatedList, "__init__", small_pages)
    push(stand_in, course, "--dry-run")
    pages = [r for r in stand_in.requests if r[1].endswith("/submissions") and r[0] == "GET"]
    assert len(pages) == 3


def test_a_progress_that_never_completes_is_given_up_on_in_bounded_time():
    class Queued:
        id, workflow_state = 5, "queued"
        queries = 0

        def query(self):
            Queued.queries += 1
            return self

    with pytest.raises(canvas_push.PushFailed, match="had not completed"):
        canvas_push.wait_for(Queued(), seconds=0.05, poll=0.01)
    assert 1 <= Queued.queries <= 10


def test_canvas_without_push_is_a_usage_error(capsys):
    assert autograder_main(["canvas"]) == 2 and "canvas push" in capsys.readouterr().err
