"""Issue 10's goals, each as a ratio measured in one run against T, the wall time of
``python -c "import tensorflow"`` on this machine in the same run.

    .venv/bin/python benchmarks/bench_goals.py class      # grade-class --jobs 2, 20 students   <= 0.5 x 20 T
    .venv/bin/python benchmarks/bench_goals.py nbgrader   # then nbgrader autograde               <= 0.3 x grade-class
    .venv/bin/python benchmarks/bench_goals.py dask       # --scheduler, 2 local Dask workers     every total identical
    .venv/bin/python benchmarks/bench_goals.py memo       # one notebook, architecture memoized
                                                          #   <= 1.0 T above worker start
    .venv/bin/python benchmarks/bench_goals.py verdicts   # the demo class with the memo off and on: identical rows
    .venv/bin/python benchmarks/bench_goals.py zygote     # the demo class with the zygote off and on: identical
                                                          #   grades.csv and results.json (timings aside)
    .venv/bin/python benchmarks/bench_goals.py all        # class, nbgrader, dask and memo in one run

The class: 20 students, 12 correct (the solution) and 8 with different mistakes taken from
autograder/synthetic_students.py (round robin over the exercises their mistakes are in; no endless loop, no
corrupt file). Every command is the real one (``python -m autograder grade-class``, ``nbgrader
autograde``, ``dask scheduler``/``dask worker``, ``python -m autograder grade``), run as a
subprocess from a fresh course folder with a fresh grader cache (so the memo starts empty). T is
measured before and after the timed commands (best of two each) and their mean is used; the load
average is printed at both ends, since another job on the machine changes every figure. Prints
figures; exits 1 only when a run gives different scores (dask, verdicts), never on a missed target.
"""

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import demo
from autograder import synthetic_students as students
from autograder.exercises import ASSIGNMENT_ID, NOTEBOOK_NAME

CORRECT, MISTAKES = 12, 8
NOT_A_MISTAKE = {"full_marks", "unanswered", "corrupt", "endless_loop"}   # not mistakes in an answer


def env() -> dict:
    """The environment of every command: quiet TensorFlow, this Python's bin folder on PATH
    (nbgrader runs ``alembic`` by name)."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def tensorflow_import_seconds() -> float:
    """T: wall time of ``python -c "import tensorflow"``, best of two (the disk cache warm)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, env=env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


class Clock:
    """T before and after, and the load average at both ends."""

    def __enter__(self):
        print(f"load average at start: {load_average()}", flush=True)
        self.before = tensorflow_import_seconds()
        print(f"T before: {self.before:.2f} s", flush=True)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.after = tensorflow_import_seconds()
            print(f"\nT after: {self.after:.2f} s; T used = mean {self.t:.2f} s")
        print(f"load average at end: {load_average()}")

    @property
    def t(self) -> float:
        return (self.before + self.after) / 2 if hasattr(self, "after") else self.before


def class_members() -> dict:
    """{student id: synthetic student}: CORRECT copies of the solution and MISTAKES different mistakes."""
    by_exercise = {}
    for name, student in students.STUDENTS.items():
        if name in NOT_A_MISTAKE or student.raw or student.unanswered or not student.answers:
            continue
        by_exercise.setdefault(sorted(student.answers)[0], []).append(name)
    mistakes = []
    while len(mistakes) < MISTAKES and any(by_exercise.values()):
        for names in by_exercise.values():
            if names and len(mistakes) < MISTAKES:
                mistakes.append(names.pop(0))
    members = {f"correct{i:02d}": "full_marks" for i in range(1, CORRECT + 1)}
    members.update({f"mistake-{name}": name for name in mistakes})
    return members


def make_class(folder: Path, members: dict) -> Path:
    course = demo.make_course(folder)
    for student, name in members.items():
        students.write_submission(students.STUDENTS[name],
                                  course / "submitted" / student / ASSIGNMENT_ID / NOTEBOOK_NAME,
                                  course)
    return course


def timed(argv, cwd, extra_env=None, label=""):
    """Run a command; (wall seconds, CompletedProcess). Its output goes to a log printed on failure."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=dict(env(), **(extra_env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"    {label or argv[2]} exited {done.returncode}:\n" + "\n".join(
            "      " + line for line in done.stdout[-3000:].splitlines()))
    return wall, done


def grade_class(course: Path, cache: Path, csv_path: Path, *extra, extra_env=None):
    argv = [sys.executable, "-m", "autograder", "grade-class", ASSIGNMENT_ID, "--jobs", "2",
            "--course-dir", str(course), "--cache-dir", str(cache), "--csv", str(csv_path), *extra]
    return timed(argv, course, extra_env, "grade-class")


def read_totals(csv_path: Path) -> dict:
    """{student: (total, status, every exercise's score)} from a grades CSV; while the written answers
    wait for a person (status manual_pending, no total yet), the autograded points."""
    with open(csv_path, newline="") as f:
        return {row["student"]: (row["total"] or row.get("auto", ""), row["status"],
                                 tuple(v for k, v in row.items()
                                       if k not in ("student", "total", "status", "message", "max_total")))
                for row in csv.DictReader(f)}


def same_rows(a: dict, b: dict, label_a: str, label_b: str) -> bool:
    differ = sorted(s for s in set(a) | set(b) if a.get(s) != b.get(s))
    for s in differ:
        print(f"    DIFFERENT {s}: {label_a} {a.get(s)} vs {label_b} {b.get(s)}")
    print(f"    {label_a} vs {label_b}: {len(set(a) | set(b)) - len(differ)} of {len(set(a) | set(b))} rows identical")
    return not differ


def report_class(wall: float, totals: dict) -> None:
    errors = sum(status == "error" for _, status, _ in totals.values())
    print(f"    grade-class --jobs 2: {len(totals)} rows in {wall:.1f} s; {errors} with status error; totals "
          + ", ".join(sorted({total for total, _, _ in totals.values()}, key=lambda t: float(t or "nan"))))


def goal_class_line(wall: float, t: float, n: int) -> str:
    ratio = wall / (n * t)
    return (f"GOAL 1: grade-class wall / ({n} T) = {wall:.1f} / {n * t:.1f} = {ratio:.2f} (target <= 0.5: "
            f"{'MET' if ratio <= 0.5 else 'MISSED'}; with the zygote, issue 26's target <= 0.2: "
            f"{'MET' if ratio <= 0.2 else 'MISSED'})")


# --- the goals ------------------------------------------------------------------------------------

def goal_class(work: Path, clock: Clock, members: dict):
    print(f"\n== a class of {len(members)}: {CORRECT} correct, {MISTAKES} mistakes "
          f"({', '.join(n for n in members.values() if n != 'full_marks')}) ==", flush=True)
    course = make_class(work / "course", members)
    csv_path = work / "grades-local.csv"
    wall, _ = grade_class(course, work / "cache", csv_path)
    return course, csv_path, wall


def goal_nbgrader(course: Path, csv_path: Path, class_wall: float, members: dict):
    print("\n== nbgrader autograde batchnorm, right after grade-class (no --force) ==", flush=True)
    wall, done = timed([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT_ID], course, label="nbgrader")
    ratio = wall / class_wall
    print(f"    nbgrader autograde: {wall:.1f} s (exit {done.returncode})")
    try:
        from nbgrader.api import Gradebook
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "dl-batchnorm") as gb:
            scores = {s: gb.find_submission(ASSIGNMENT_ID, s).score for s in members}
        local = {s: float(total) for s, (total, _, _) in read_totals(csv_path).items()}
        differ = [s for s in members if abs(scores[s] - local.get(s, float("nan"))) > 1e-9]
        print(f"    gradebook scores equal to grade-class totals: {len(members) - len(differ)} of {len(members)}"
              + (f" (different: {', '.join(differ)})" if differ else ""))
    except Exception as error:  # noqa: BLE001 - a figure, not a check
        print(f"    (could not read the gradebook: {type(error).__name__}: {error})")
    return (f"GOAL 2: nbgrader autograde / grade-class = {wall:.1f} / {class_wall:.1f} = {ratio:.2f} "
            f"(target <= 0.3): {'MET' if ratio <= 0.3 and done.returncode == 0 else 'MISSED'}")


def _dask_available() -> bool:
    try:
        import distributed  # noqa: F401, PLC0415
    except ImportError:
        return False
    return shutil.which("dask", path=str(Path(sys.executable).parent)) is not None


def goal_dask(work: Path, course: Path, csv_path: Path, clock: Clock):
    """(summary line or None, whether every row was identical)"""
    print("\n== the same class through --scheduler on two local Dask workers ==", flush=True)
    if not _dask_available():
        print("    skipped: Dask is not installed (pip install '.[cluster]')")
        return "GOAL 3: skipped (Dask is not installed)", True
    dask = str(Path(sys.executable).parent / "dask")
    root = work / "dask"
    root.mkdir()
    scheduler_file = root / "scheduler.json"
    logs, procs = [], []

    def start(args, name):
        log = open(root / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([dask, *args], cwd=root, env=env(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
               "--scheduler-file", str(scheduler_file)], "scheduler")
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            start(["worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                   "--local-directory", str(root / "workers")], f"worker-{i}")
        from distributed import Client  # noqa: PLC0415
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        dask_csv = work / "grades-dask.csv"
        wall, done = grade_class(course, work / "cache-dask", dask_csv, "--force", "--scheduler", address)
        if done.returncode != 0 or not dask_csv.exists():
            print("    the Dask run did not finish; see above")
            return "GOAL 3: MISSED (the Dask run did not finish)", False
        print(f"    grade-class --scheduler (2 workers, 1 thread each): {wall:.1f} s")
        same = same_rows(read_totals(csv_path), read_totals(dask_csv), "local", "dask")
        return (f"GOAL 3: every student's total (and exercise scores) on Dask identical to the local run: "
                f"{'MET' if same else 'MISSED'} (Dask wall {wall:.1f} s = {wall / (20 * clock.t):.2f} x 20 T)"), same
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def goal_memo(work: Path, clock: Clock) -> None:
    print("\n== one notebook, python -m autograder grade, its architecture already in the memo ==", flush=True)
    notebook = students.write_submission(students.STUDENTS["full_marks"], work / "one" / NOTEBOOK_NAME)
    cache = work / "cache-one"
    figures = []
    for run in ("cold (fills the memo)", "warm", "warm"):
        output = work / "one" / "results.json"
        wall, done = timed([sys.executable, "-m", "autograder", "grade", str(notebook), "--output", str(output),
                            "--cache-dir", str(cache)], work, label="grade")
        timings = json.loads(output.read_text())["timings"]
        above = wall - timings["worker_start"]
        print(f"    {run:<22} command {wall:5.1f} s, worker start {timings['worker_start']:.1f} s "
              f"(of which the checks waited {timings.get('worker_wait', float('nan')):.1f} s: the rest overlapped "
              f"pytest's start), training check {timings.get('training_check', float('nan')):.2f} s, total "
              f"{timings['total']:.1f} s; above the worker's start {above:.1f} s")
        if run == "warm":
            figures.append((above, wall))
    return min(above for above, _ in figures), min(wall for _, wall in figures)


def goal_memo_line(memo: tuple, t: float) -> str:
    above, wall = memo
    return (f"GOAL 4: (grade command wall - worker start) / T = {above:.1f} / {t:.1f} = {above / t:.2f} "
            f"(target <= 1.0; best of two warm runs): {'MET' if above <= t else 'MISSED'}\n"
            f"  GOAL 4 with the zygote (issue 26): grade command wall / T = {wall:.1f} / {t:.1f} = {wall / t:.2f} "
            f"(target <= 0.5; best of two warm runs): {'MET' if wall <= 0.5 * t else 'MISSED'}")


def goal_verdicts(work: Path, warm: bool) -> bool:
    """The demo class with the memo off, then on from an empty cache (students who share an
    architecture are served by the memo within the run), then, with --warm, on again (all served)."""
    runs = (("memo off", "0"), ("memo on", "1")) + ((("memo warm", "1"),) if warm else ())
    print(f"\n== the demo class graded with the {', then '.join(label for label, _ in runs)} ==", flush=True)
    course = demo.make_course(work / "demo")
    demo.hand_in(course)
    rows = {}
    for label, memo in runs:
        cache = work / ("cache-off" if memo == "0" else "cache-memo")
        csv_path = work / f"grades-{label.replace(' ', '-')}.csv"
        wall, _ = grade_class(course, cache, csv_path, "--force", extra_env={"BN_AUTOGRADER_TRAINING_MEMO": memo})
        rows[label] = read_totals(csv_path)
        print(f"    {label}: {len(rows[label])} students in {wall:.1f} s")
    entries = len(list((work / "cache-memo" / "training-memo").glob("*.json")))
    print(f"    memo entries: {entries} (one per architecture that was trained)")
    same = all([same_rows(rows["memo off"], rows[label], "memo off", label) for label, _ in runs[1:]])
    print(f"  the memo changes no verdict (every exercise's score and every total): {'YES' if same else 'NO'}")
    return same


def class_documents(course: Path) -> dict:
    """{student: results.json without its timings} of a grade-class run."""
    documents = {}
    for path in sorted((course / "grade-class").glob(f"*/{ASSIGNMENT_ID}/results.json")):
        document = json.loads(path.read_text())
        document.pop("timings", None)
        documents[path.parent.parent.name] = document
    return documents


def goal_zygote(work: Path, clock: Clock) -> bool:
    """The demo class with every worker started fresh, then forked from the zygote: grades.csv the
    same bytes, and every results.json the same once its timings are set aside."""
    print("\n== the demo class graded with the zygote off, then on ==", flush=True)
    course = demo.make_course(work / "demo")
    demo.hand_in(course)
    grades, documents = {}, {}
    for label, switch in (("zygote off", "0"), ("zygote on", "1")):
        csv_path = work / f"grades-{label.replace(' ', '-')}.csv"
        wall, _ = grade_class(course, work / "cache-zygote", csv_path, "--force",
                              extra_env={"BN_AUTOGRADER_ZYGOTE": switch})
        grades[label], documents[label] = csv_path.read_bytes(), class_documents(course)
        forked = sum(json.loads(p.read_text())["timings"].get("workers_forked", 0)
                     for p in (course / "grade-class").glob(f"*/{ASSIGNMENT_ID}/results.json"))
        n = len(documents[label])
        print(f"    {label}: {n} students in {wall:.1f} s = {wall / (n * clock.t):.2f} x {n} T; "
              f"workers forked: {forked}")
    same_csv = grades["zygote off"] == grades["zygote on"]
    differ = sorted(s for s in set(documents["zygote off"]) | set(documents["zygote on"])
                    if documents["zygote off"].get(s) != documents["zygote on"].get(s))
    print(f"    grades.csv byte-identical: {'YES' if same_csv else 'NO'}")
    print(f"    results.json identical but for timings: {len(documents['zygote on']) - len(differ)} of "
          f"{len(documents['zygote on'])}" + (f" (different: {', '.join(differ)})" if differ else ""))
    return same_csv and not differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("goal", choices=("class", "nbgrader", "dask", "memo", "verdicts", "zygote", "all"))
    parser.add_argument("--warm", action="store_true", help="verdicts: a third run with the memo warm")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-goals-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; work folder {work}")
    ok, lines, class_wall = True, [], None
    try:
        with Clock() as clock:
            if args.goal == "verdicts":
                ok = goal_verdicts(work, args.warm)
            if args.goal == "zygote":
                ok = goal_zygote(work, clock)
            if args.goal == "memo":
                above = goal_memo(work, clock)
            if args.goal in ("class", "nbgrader", "dask", "all"):
                members = class_members()
                course, csv_path, class_wall = goal_class(work, clock, members)
                if csv_path.exists():
                    report_class(class_wall, read_totals(csv_path))
                if args.goal in ("nbgrader", "all"):
                    lines.append(goal_nbgrader(course, csv_path, class_wall, members))
                if args.goal in ("dask", "all"):
                    line, same = goal_dask(work, course, csv_path, clock)
                    lines.append(line)
                    ok = ok and same
                if args.goal == "all":
                    above = goal_memo(work, clock)
        print("\n== against the T of this run ==")
        if class_wall is not None:
            print("  " + goal_class_line(class_wall, clock.t, len(members)))
        for line in lines:
            print("  " + line)
        if args.goal in ("memo", "all"):
            print("  " + goal_memo_line(above, clock.t))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
