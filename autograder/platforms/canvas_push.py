"""Post the class's grades to a Canvas assignment through Canvas' REST API (canvasapi):

    CANVAS_API_TOKEN=... python -m autograder canvas push batchnorm --url https://canvas.example.edu
        --course ID --assignment ID [--dry-run] [--comments] [--match ...] [--autograded-only]
        [--overwrite-hand-edits] [--course-dir DIR] [--grades CSV]

Each run reads grades.csv (the value each student gets is canvas.py's ``canvas_points``: the total, a
student-side error's total, nothing for a written answer still pending unless ``--autograded-only``,
never anything for a grader-side error), matches its students with the course's students (``--match``,
as ``export canvas``; Canvas' users carry ``login_id``, ``sis_user_id``, ``id`` and ``sortable_name``),
reads the grades Canvas holds (each submission's ``entered_score``: the grade as given, before a late
policy's deduction, which is Canvas' to apply), and prints the plan: per student unchanged, new, changed, hand-edited,
left out (grader error, pending) or unmatched. ``--dry-run`` stops there. Otherwise the new and changed
grades, and only those, go to Canvas in one bulk update ("Grade or comment on multiple submissions"),
whose Progress is followed until Canvas says completed or failed (at most PROGRESS_SECONDS). A second
run finds Canvas equal to grades.csv and posts nothing.

What was last pushed is kept in ``COURSE/grade-class/canvas-pushed.json`` (atomically, after Canvas
says the update completed), per Canvas URL, course and assignment: {user id: points}. A grade in Canvas
that is neither grades.csv's nor the one last pushed (a person changed it in Canvas since, excused the
student, or entered it before any push) is a hand edit: it is listed with a warning and NOT
overwritten, unless ``--overwrite-hand-edits`` is given. A grade Canvas holds equal to grades.csv's is
recorded as pushed (it agrees, whoever put it there).

``--comments`` adds to each posted grade a submission comment: the feedback page as plain text
(feedback.plain_text from the student's results.json), so a comment goes with a grade that changes,
not again on every run.

The token comes from the environment variable CANVAS_API_TOKEN only (never a flag: a command line is
visible to every user of the machine); a plain http:// URL is refused unless it is this machine's.
Endpoints used (Canvas REST API): GET /api/v1/courses/:id, GET /api/v1/courses/:id/assignments/:id,
GET /api/v1/courses/:id/search_users (enrollment_type[]=student), GET
/api/v1/courses/:id/assignments/:id/submissions, POST
/api/v1/courses/:id/assignments/:id/submissions/update_grades, GET /api/v1/progress/:id.

Exit status: 0 when Canvas holds every student's grade, 3 when some student was left out, unmatched or
hand-edited (what could be posted was), 1 when Canvas refused or the update failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..atomic import write_json_atomic
from ..classroom import store
from ..classroom.grades import read_csv
from ..exercises import unknown_assignment
from ..feedback import plain_text
from ..results import format_points
from .canvas import (
    DEFAULT_MATCH,
    EXIT_LEFT_OUT,
    MATCHES,
    Matching,
    canvas_points,
    left_out,
    match,
    other_maximum,
    points_possible,
    report_left_out,
)

TOKEN_VARIABLE = "CANVAS_API_TOKEN"
PUSHED_NAME = "canvas-pushed.json"        # in COURSE/grade-class/
SAME_POINTS = 0.005                       # Canvas keeps scores to two decimals: closer than this is equal
PROGRESS_SECONDS = 120.0                  # how long the bulk update's Progress is followed
PROGRESS_POLL = 1.0                       # seconds between two looks at it
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

# The plan's kinds, in the order it is printed
NEW, CHANGED, HAND_EDITED, UNCHANGED = "new", "changed", "hand-edited", "unchanged"


@dataclass
class Step:
    """What the push does for one matched student."""
    student: str
    user_id: int
    kind: str                      # NEW, CHANGED, HAND_EDITED, UNCHANGED, or a left-out reason
    points: float | None           # grades.csv's (None when left out)
    in_canvas: float | None        # the score Canvas holds (None when none)
    last_pushed: float | None
    excused: bool = False


@dataclass
class Plan:
    steps: list = field(default_factory=list)
    matching: Matching = field(default_factory=Matching)

    def of(self, *kinds) -> list:
        return [s for s in self.steps if s.kind in kinds]

    def to_post(self, overwrite_hand_edits: bool) -> list:
        return self.of(NEW, CHANGED, *((HAND_EDITED,) if overwrite_hand_edits else ()))


def same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=0, abs_tol=SAME_POINTS)


def step_kind(points: float, in_canvas: float | None, last_pushed: float | None, excused: bool) -> str:
    """NEW, CHANGED, HAND_EDITED or UNCHANGED for a grade of ``points`` (see the module's docstring)."""
    if excused:
        return HAND_EDITED
    if same(in_canvas, points):
        return UNCHANGED
    if in_canvas is None:
        return NEW if last_pushed is None else HAND_EDITED       # a grade pushed, then removed in Canvas
    return CHANGED if same(in_canvas, last_pushed) else HAND_EDITED


def plan(grades, users, submissions, pushed: dict, *, match_by: str = DEFAULT_MATCH,
         autograded_only: bool = False) -> Plan:
    """The push's plan: ``users`` are Canvas' students (objects with the API User's attributes),
    ``submissions`` {user id: (score or None, excused)}, ``pushed`` {user id (str): points last pushed}."""
    attribute = MATCHES[match_by][1]
    found = Plan(matching=match(grades, users, lambda user: getattr(user, attribute, None)))
    for grade, user in found.matching.pairs:
        score, excused = submissions.get(user.id, (None, False))
        last = pushed.get(str(user.id))
        reason = left_out(grade, autograded_only=autograded_only)
        if reason:
            found.steps.append(Step(grade.student, user.id, reason, None, score, last, excused))
            continue
        points = canvas_points(grade, autograded_only=autograded_only)
        found.steps.append(Step(grade.student, user.id, step_kind(points, score, last, excused), points, score,
                                last, excused))
    for grade in grades:           # an unmatched student's grader error is listed as such too
        reason = left_out(grade, autograded_only=autograded_only)
        if reason and grade.student in found.matching.only_grades:
            found.steps.append(Step(grade.student, 0, reason, None, None, None))
    return found


def exit_status(found: Plan, overwrite_hand_edits: bool) -> int:
    """0 when Canvas holds (or is sent) every student's grade; EXIT_LEFT_OUT when someone is left out,
    unmatched, or keeps a hand-edited grade."""
    done = (NEW, CHANGED, UNCHANGED, *((HAND_EDITED,) if overwrite_hand_edits else ()))
    whole = all(s.kind in done for s in found.steps) and not (found.matching.only_grades or
                                                             found.matching.only_canvas)
    return 0 if whole else EXIT_LEFT_OUT


def _shown(points: float | None) -> str:
    return "-" if points is None else format_points(points)


def print_plan(found: Plan, *, overwrite_hand_edits: bool, out=None, err=None) -> None:
    """The plan, student by student for what changes (``out``, default stdout); warnings and what is left
    out on ``err`` (default stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    for step in found.of(NEW, CHANGED):
        print(f"  {step.kind:<9} {step.student}: {_shown(step.in_canvas)} -> {_shown(step.points)}", file=out)
    for step in found.of(HAND_EDITED):
        what = "excused in Canvas" if step.excused else f"Canvas holds {_shown(step.in_canvas)}, last pushed " \
            f"{_shown(step.last_pushed)}"
        action = "OVERWRITING it (--overwrite-hand-edits)" if overwrite_hand_edits else \
            "left as it is (--overwrite-hand-edits to replace it)"
        print(f"WARNING: {step.student}'s grade was changed by hand in Canvas ({what}); grades.csv says "
              f"{_shown(step.points)}: {action}", file=err)
    left = {}
    for step in found.steps:
        if step.kind not in (NEW, CHANGED, HAND_EDITED, UNCHANGED):
            left.setdefault(step.kind, []).append(step.student)
    report_left_out(err, left, found.matching, lambda user: f"{getattr(user, 'sortable_name', '?')} "
                                                            f"(id {user.id})")
    print(f"{len(found.of(NEW))} new, {len(found.of(CHANGED))} changed, {len(found.of(UNCHANGED))} unchanged, "
          f"{len(found.of(HAND_EDITED))} hand-edited, {sum(map(len, left.values()))} left out, "
          f"{len(found.matching.only_grades)} of grades.csv and {len(found.matching.only_canvas)} of Canvas "
          "unmatched", file=out)


# --- what was last pushed ------------------------------------------------------------------------------

def pushed_path(course) -> Path:
    return Path(course) / store.OUTPUT_DIR / PUSHED_NAME


def pushed_key(url: str, course_id: str, assignment_id: str) -> str:
    return f"{url.rstrip('/')}/courses/{course_id}/assignments/{assignment_id}"


def read_pushed(path) -> dict:
    """{assignment key: {user id: points}}; empty when there is no file yet; ValueError when it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError(f"{path} is not a record of pushed grades")
    try:
        return {key: {str(u): float(p) for u, p in grades.items()} for key, grades in doc.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{path} holds points that are not numbers") from None


# --- Canvas --------------------------------------------------------------------------------------------

class PushFailed(RuntimeError):
    """Canvas refused a request, or the bulk update did not complete."""


def comment_for(course, student: str) -> str | None:
    """The plain-text feedback of ``student``'s stored result; None when there is none to read."""
    try:
        result = store.read_result(course, student)
    except (OSError, ValueError):
        return None
    return plain_text(result, written=store.stored_written(course, student))


def entered_score(submission) -> float | None:
    """The score a grader gave ``submission`` (posted_grade's points): Canvas' ``entered_score``, before a
    late policy's deduction (``score`` is after it, so comparing with it would call every late student's
    pushed grade a hand edit); ``score`` where Canvas does not send ``entered_score``. None for no grade,
    and for the grade Canvas' missing-submission policy gives by itself (``late_policy_status``
    "missing"): no person gave it, and the work was handed in through nbgrader, not Canvas."""
    if getattr(submission, "late_policy_status", None) == "missing":
        return None
    for name in ("entered_score", "score"):
        value = getattr(submission, name, None)
        if value is not None:
            return float(value)
    return None


def wait_for(progress, *, seconds: float | None = None, poll: float | None = None):
    """Follow a canvasapi Progress until Canvas says completed (returned) or failed (PushFailed), at most
    ``seconds`` (PROGRESS_SECONDS), looking every ``poll`` seconds (PROGRESS_POLL)."""
    seconds = PROGRESS_SECONDS if seconds is None else seconds
    poll = PROGRESS_POLL if poll is None else poll
    deadline = time.monotonic() + seconds
    while getattr(progress, "workflow_state", None) not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise PushFailed(f"Canvas' bulk update (progress {progress.id}) had not completed after {seconds:g} s; "
                             "run the push again later: it posts only what Canvas has not applied")
        time.sleep(poll)
        progress = progress.query()
    if progress.workflow_state == "failed":
        raise PushFailed(f"Canvas' bulk update failed: {getattr(progress, 'message', None) or 'no reason given'} "
                         "(Canvas grades student by student, skipping one it cannot find: the grades it applied "
                         "stay; the next push posts only the others)")
    return progress


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder canvas push",
                                description="Post the grades that differ from Canvas' to a Canvas assignment "
                                            f"(token: the {TOKEN_VARIABLE} environment variable).")
    p.add_argument("assignment_name", metavar="assignment", help="the assignment id (batchnorm)")
    p.add_argument("--url", required=True,
                   help="the Canvas instance, https://canvas.example.edu (http only for this machine)")
    p.add_argument("--course", required=True, metavar="ID", help="Canvas' course id (in the course's address)")
    p.add_argument("--assignment", required=True, metavar="ID",
                   help="Canvas' assignment id (in the assignment's address)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, post nothing")
    p.add_argument("--comments", action="store_true",
                   help="add each posted grade's feedback (plain text) as a submission comment")
    p.add_argument("--match", choices=tuple(MATCHES), default=DEFAULT_MATCH,
                   help="the Canvas identity nbgrader's student id is (default: %(default)s)")
    p.add_argument("--autograded-only", action="store_true",
                   help="post the autograded points alone (written answers pending or graded elsewhere)")
    p.add_argument("--overwrite-hand-edits", action="store_true",
                   help="replace grades changed by hand in Canvas since the last push (default: warn, keep them)")
    p.add_argument("--course-dir", default=".", help="the nbgrader course folder (default: current directory)")
    p.add_argument("--grades", help="grade-class's CSV (default: COURSE_DIR/grades.csv)")
    return p


def _usage_error(args) -> str | None:
    if unknown_assignment(args.assignment_name):
        return unknown_assignment(args.assignment_name)
    if not os.environ.get(TOKEN_VARIABLE, "").strip():
        return f"set {TOKEN_VARIABLE} to a Canvas access token (Canvas: Account > Settings > New access token)"
    url = urlsplit(args.url)
    if url.scheme not in ("https", "http") or not url.hostname or "api/v1" in url.path:
        return f"--url {args.url!r} is not a Canvas instance's address (https://canvas.example.edu)"
    if url.scheme == "http" and url.hostname not in LOCAL_HOSTS:
        return f"--url {args.url!r} is plain http: the token would cross the network readable; use https"
    return None


def push(args, grades) -> int:
    """Read Canvas, print the plan and, unless a dry run, post it; the exit status."""
    try:
        from canvasapi import Canvas  # noqa: PLC0415 (the [canvas] extra: only this command needs it)
        from canvasapi.exceptions import CanvasException  # noqa: PLC0415
        from requests import RequestException  # noqa: PLC0415 (canvasapi's HTTP client)
    except ImportError:
        raise PushFailed("canvasapi is not installed: pip install -e '.[canvas]'") from None
    refused = (CanvasException, RequestException)

    course_dir = Path(args.course_dir)
    record_path = pushed_path(course_dir)
    records = read_pushed(record_path)
    key = pushed_key(args.url, args.course, args.assignment)
    pushed = records.get(key, {})
    try:
        canvas = Canvas(args.url.rstrip("/"), os.environ[TOKEN_VARIABLE])
        course = canvas.get_course(args.course)
        assignment = course.get_assignment(args.assignment)
        users = list(course.get_users(enrollment_type=["student"]))
        submissions = {s.user_id: (entered_score(s), bool(getattr(s, "excused", False)))
                       for s in assignment.get_submissions()}
    except refused as e:
        raise PushFailed(f"Canvas refused to read the course or assignment: {e}") from None
    maximum = points_possible(grades, autograded_only=args.autograded_only)
    theirs = getattr(assignment, "points_possible", None)
    note = None if theirs is None else other_maximum(getattr(assignment, "name", args.assignment), float(theirs),
                                                     maximum)
    if note:
        print(f"note: {note}", file=sys.stderr)
    attribute = MATCHES[args.match][1]
    if users and all(getattr(u, attribute, None) is None for u in users):
        print(f"note: Canvas sent no {attribute} for any student: Canvas sends login_id, sis_user_id only to a user "
              "allowed to see them (managing students or reading SIS data); nobody is matched by --match "
              f"{args.match} (--match id or name need no such right)", file=sys.stderr)
    found = plan(grades, users, submissions, pushed, match_by=args.match, autograded_only=args.autograded_only)
    print_plan(found, overwrite_hand_edits=args.overwrite_hand_edits)
    agreed = {str(s.user_id): s.points for s in found.of(UNCHANGED)}
    to_post = found.to_post(args.overwrite_hand_edits)
    if args.dry_run:
        print(f"dry run: {len(to_post)} grades would be posted; nothing was sent")
        return exit_status(found, args.overwrite_hand_edits)
    if to_post:
        grade_data = {}
        for step in to_post:
            grade_data[step.user_id] = {"posted_grade": format_points(step.points)}
            comment = comment_for(course_dir, step.student) if args.comments else None
            if comment:
                grade_data[step.user_id]["text_comment"] = comment
            elif args.comments:
                print(f"note: no results.json to comment from for {step.student}; grade posted without comment",
                      file=sys.stderr)
        try:
            wait_for(assignment.submissions_bulk_update(grade_data=grade_data))
        except refused as e:
            raise PushFailed(f"Canvas refused the bulk update: {e}") from None
        agreed.update({str(s.user_id): s.points for s in to_post})
    if agreed != {k: v for k, v in pushed.items() if k in agreed}:
        records[key] = {**pushed, **agreed}
        write_json_atomic(records, record_path)
    print(f"posted {len(to_post)} grades" + (" with comments" if args.comments and to_post else ""))
    return exit_status(found, args.overwrite_hand_edits)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "push":
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print("usage: python -m autograder canvas push batchnorm --url URL --course ID --assignment ID [options]\n"
              "(python -m autograder canvas push --help for the options)", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    try:
        args = _parser().parse_args(argv[1:])
    except SystemExit as e:
        return int(e.code or 0)
    problem = _usage_error(args)
    if problem:
        print(f"canvas push: {problem}", file=sys.stderr)
        return 2
    try:
        grades = read_csv(Path(args.grades) if args.grades else Path(args.course_dir) / "grades.csv")
        return push(args, grades)
    except (OSError, ValueError) as e:        # GradesFileError is a ValueError; so is a broken record
        print(f"canvas push: {e}", file=sys.stderr)
        return 2
    except PushFailed as e:
        print(f"canvas push: {e}", file=sys.stderr)
        return 1
