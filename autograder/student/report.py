"""The student check's report: its problems, one line per exercise, and its text and JSON.

``Report.lines()`` is what ``python -m autograder check`` prints after its first line, and
``Report.to_json()`` what ``--output`` writes (``{"ready", "exercises", "problems", "reminders"}``).
A reminder (a written answer still empty) is not a problem: it never makes a notebook "not ready".
"""

import json
from dataclasses import asdict, dataclass, field

from ..exercises import EXERCISES
from ..text import bounded

KINDS = ("not_a_notebook", "changed_locked_cell", "loads_data_or_trains", "cell_timeout", "missing_module",
         "undefined_name", "cell_error", "missing_function", "visible_test_failed", "not_checked")
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


@dataclass
class Problem:
    kind: str
    cell: int | None        # 1-based position in the notebook, or None
    message: str            # may quote the student's own error text: bounded and escaped when set

    def __setattr__(self, name, value):
        super().__setattr__(name, bounded(value) if name == "message" else value)


@dataclass
class ExerciseReport:
    id: str
    found: bool             # its function is defined after the fresh run
    ran: bool               # its answer cell ran without an error or a time-out
    visible_tests: str      # "passed" | "failed" | "not run"
    message: str

    def __setattr__(self, name, value):
        super().__setattr__(name, bounded(value) if name == "message" else value)


@dataclass
class Report:
    ready: bool
    exercises: list
    problems: list
    isolation: str = ""
    could_not_run: bool = False      # the check itself could not run the notebook here (exit 2)
    reminders: list = field(default_factory=list)   # written answers still empty: said, never a problem

    def to_dict(self) -> dict:
        return {"ready": self.ready, "exercises": [asdict(e) for e in self.exercises],
                "problems": [asdict(p) for p in self.problems], "reminders": list(self.reminders)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def lines(self) -> list:
        """What the command prints after its first line: one line per exercise, then the problems."""
        out = []
        for number, (exercise, found) in enumerate(zip(EXERCISES, self.exercises, strict=False), start=1):
            out.append(f"  {number}. {exercise.id:<26} {found.message}")
        if self.problems:
            out.append(f"{len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}:")
            out += [f"  [{p.kind}] {p.message}" for p in self.problems]
        if self.reminders:
            out.append(f"Reminder, not a problem: {len(self.reminders)} written answer"
                       f"{'s are' if len(self.reminders) > 1 else ' is'} still empty (graded by a person, "
                       "after the deadline; the check does not read them):")
            out += [f"  {r}" for r in self.reminders]
        if self.ready:
            out.append("READY: the notebook runs from a fresh start as the grader runs it, and the visible tests "
                       "pass. (The hidden checks test more cases.)")
        elif self.could_not_run:
            out.append("NOT CHECKED: the check could not run the notebook on this computer (see above).")
        else:
            out.append("NOT READY: fix the problems above, save the notebook, and run the check again.")
        return out


def unreadable_report(why: str) -> Report:
    problem = Problem("not_a_notebook", None, (
        f"{why}; the grader cannot read it either: open the notebook in Jupyter, save it (File > Save), and "
        f"hand in the .ipynb file"))
    exercises = [ExerciseReport(e.id, False, False, NOT_RUN, "not run: the file is not a readable notebook")
                 for e in EXERCISES]
    return Report(False, exercises, [problem])
