"""Similarity between submissions: evidence for a human to read, never a verdict.

    python -m autograder similarity batchnorm [--course-dir DIR] [--reference DIR] [--top N]

writes ``grade-class/similarity.html`` and ``grade-class/similarity.csv`` (``student_a, student_b,
exercise, score``; ``exercise`` is an exercise id, or ``notebook`` for the whole notebook).

* **Code answers.** Each student's answer cells (the solution cells, by their nbgrader grade_id,
  read with notebook.read like the grader reads them) are compared with copydetect: its tokenizer
  replaces identifiers by one letter and drops comments, and its fingerprints (every k-gram of the
  filtered code, k = ``NOISE``) are matched between the two students. Everything the release
  holds (the stubs, the docstrings, the set-up and test cells) is copydetect's boilerplate: a
  fingerprint found there never counts as shared, and an answer left as its stub is no answer.
  A pair's score is the mean of the two students' shares of fingerprinted code found in the
  other's (copydetect's compare_files similarity, 0-1; ``score`` computes the same with NumPy).
* **The whole notebook ranks.** Many answers are short (a BN forward pass is four lines), and two
  students who never met write the same four lines. So a pair is ranked, and flagged, on its
  ``notebook`` score: every code answer, every other solution cell and every code cell the
  student added, as one document.
  The per-exercise scores are shown beside it as evidence; an exercise alone never flags a pair.
* **Model builders** are not compared as text: the exercise asks for one architecture, so
  identical architectures are expected. Students are grouped by the canonical architecture their
  builder produced (results.json's ``architectures``, recorded by the grader: models/architecture.py),
  and the page says so.
* **Past terms.** ``--reference DIR``: every notebook under DIR is compared with every student
  (not with each other) and named ``reference:<path>``.

Reading a submission never runs it. Everything a student wrote is escaped in the page (jinja2) and
made inert in the CSV (grades.inert).
"""

import argparse
import io
import logging
import statistics
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from .. import notebook as notebooks
from ..atomic import write_atomic
from ..errors import NotebookUnreadable
from ..exercises import ASSIGNMENT_ID, EXERCISES, Kind, unknown_assignment
from ..templates import template
from ..text import bounded
from . import store
from .collect import discover
from .grades import csv_text
from .report import read_results

log = logging.getLogger(__name__)

HTML_NAME = "similarity.html"
CSV_NAME = "similarity.csv"
CSV_COLUMNS = ("student_a", "student_b", "exercise", "score")
NOTEBOOK = "notebook"
NOISE = 25              # copydetect's noise threshold: k, in characters of filtered code
FLAG = 0.6              # a pair whose notebook score is at least this is shown first, to be read
TOP = 100               # pairs listed in the CSV and the page
SHOWN_SIDE_BY_SIDE = 10
NAME_CHARS = 300        # a student id or a reference's path (a past notebook's), printed: never cut, only escaped
REFERENCE_PREFIX = "reference:"

CODE_EXERCISES = tuple(e for e in EXERCISES if e.solution_cell and e.kind is not Kind.MODEL)
MODEL_EXERCISES = tuple(e for e in EXERCISES if e.kind is Kind.MODEL)
BY_CELL = {e.solution_cell: e.id for e in EXERCISES if e.solution_cell}


# --- what each student wrote ----------------------------------------------------------------------

@dataclass
class Answers:
    """One student's answer cells: {exercise: code}, the other solution cells {grade_id: code} (an
    answer that is no graded exercise's), and the code cells they added."""
    student: str
    exercises: dict = field(default_factory=dict)
    others: dict = field(default_factory=dict)
    added: str = ""

    def drop_stubs(self, release: "Answers") -> "Answers":
        """Leave out the answers that are the release's stub as it is (not answered): where two stubs
        meet, the whole-notebook document would otherwise hold code every such student shares."""
        for mine, theirs in ((self.exercises, release.exercises), (self.others, release.others)):
            for key, stub in theirs.items():
                if key in mine and _squeezed(mine[key]) == _squeezed(stub):
                    del mine[key]
        return self

    def documents(self) -> dict:
        """{exercise id or "notebook": text} of what is compared: each code answer, and the whole
        notebook (every code answer, the other solution cells and the added cells)."""
        docs = {e.id: self.exercises[e.id] for e in CODE_EXERCISES if self.exercises.get(e.id, "").strip()}
        whole = "\n\n".join([*docs.values(), *self.others.values(), self.added]).strip()
        if whole:
            docs[NOTEBOOK] = whole + "\n"
        return docs


def without_strings(code: str, strings) -> str:
    """``code`` without the string literals in ``strings`` (the release's docstrings): copydetect
    reduces a string to one token, so a released docstring would otherwise be marked as shared
    whenever the code next to it is. Code that does not tokenize is left as it is."""
    if not strings:
        return code
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    cut = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.STRING and tok.string in strings:
                cut.append((starts[tok.start[0] - 1] + tok.start[1], starts[tok.end[0] - 1] + tok.end[1]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    for start, end in reversed(cut):
        code = code[:start] + code[end:]
    return code


def released_strings(cells) -> set:
    """The long string literals (docstrings) of the released code cells."""
    found = set()
    for code in cells:
        try:
            found |= {t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
                      if t.type == tokenize.STRING and len(t.string) >= 40}
        except (tokenize.TokenError, IndentationError, SyntaxError):
            continue
    return found


def answers_of(student: str, notebook: notebooks.Notebook, strip=()) -> Answers:
    """The answer cells of a notebook read by notebook.read (solution cells by grade_id; the cells the
    student added go to ``added``), without the ``strip`` strings."""
    found = Answers(student)
    added = []
    for cell in notebook.cells:
        role = notebooks.role(cell)
        if role not in (notebooks.Role.SOLUTION, notebooks.Role.ADDED):
            continue
        code = without_strings(notebooks.source(cell), strip)
        cell_id = notebooks.grade_id(cell)
        if role is notebooks.Role.SOLUTION and cell_id:
            into, key = (found.exercises, BY_CELL[cell_id]) if cell_id in BY_CELL else (found.others, cell_id)
            into[key] = (into.get(key, "") + "\n" + code).strip("\n") + "\n"
        elif code.strip():
            added.append(code)
    found.added = "\n\n".join(added)
    return found


def released_notebook(course=None):
    """The released notebook (the course's, else this project's), or None."""
    for path in notebooks.released_paths(course):
        if path.is_file():
            try:
                return notebooks.read(path)
            except NotebookUnreadable:
                continue
    return None


def released_code(course=None) -> list:
    """The released notebook's code, as boilerplate: each code cell, and the documents an untouched
    release gives (answers_of + documents)."""
    read = released_notebook(course)
    if read is None:
        return []
    cells = [notebooks.source(c) for c in read.cells if c.get("cell_type") == "code"]
    return cells + list(answers_of("release", read).documents().values())


def _squeezed(code: str) -> str:
    return "".join(code.split())


# --- copydetect -----------------------------------------------------------------------------------

def _fingerprint(name: str, text: str, boilerplate):
    from copydetect import CodeFingerprint
    return CodeFingerprint(name, NOISE, 1, boilerplate, language="python", fp=io.StringIO(text))


def boilerplate_hashes(cells) -> list:
    """copydetect's boilerplate: the fingerprints of every released code cell."""
    hashes = set()
    for i, code in enumerate(cells):
        if code.strip():
            hashes |= _fingerprint(f"release-{i}.py", code, None).hashes
    return sorted(hashes)


@dataclass
class Fingerprints:
    student: str
    docs: dict          # {exercise or "notebook": copydetect.CodeFingerprint}
    reference: bool = False


def fingerprints(answers: Answers, boilerplate, reference=False) -> Fingerprints:
    import numpy as np
    found = {}
    with np.errstate(all="ignore"):
        for key, text in answers.documents().items():
            found[key] = _fingerprint(f"{answers.student}/{key}.py", text, boilerplate)
    return Fingerprints(answers.student, found, reference)


def compare(a, b):
    """(score, slices) of two CodeFingerprints: the mean of copydetect's two similarities
    (copydetect.compare_files), 0 when either has nothing left after boilerplate."""
    from copydetect import compare_files
    if not a.hashes or not b.hashes:
        return 0.0, None
    _, (sim_a, sim_b), slices = compare_files(a, b)
    return float(sim_a + sim_b) / 2, slices


def _arrays(fp):
    """A CodeFingerprint's hash_idx as arrays (hash of each position, position), kept on it."""
    import numpy as np
    found = getattr(fp, "_autograder_arrays", None)
    if found is None:
        keys = np.fromiter(fp.hash_idx.keys(), dtype=np.int64, count=len(fp.hash_idx))
        counts = np.fromiter((len(v) for v in fp.hash_idx.values()), dtype=np.int64, count=len(fp.hash_idx))
        positions = np.fromiter((i for v in fp.hash_idx.values() for i in v), dtype=np.int64,
                                count=int(counts.sum()))
        found = fp._autograder_arrays = (np.sort(keys), np.repeat(keys, counts), positions)
    return found


def score(a, b) -> float:
    """compare()'s score, computed with numpy on the same copydetect fingerprints: the positions of
    the hashes the two share go to copydetect's get_copied_slices, as compare_files does with
    lists (which costs a NumPy array per shared hash: minutes for a class whose answers share much).
    tests/test_similarity.py checks that the two agree."""
    import numpy as np
    from copydetect.utils import get_copied_slices
    if not a.hashes or not b.hashes:
        return 0.0
    keys_a, hashes_a, positions_a = _arrays(a)
    keys_b, hashes_b, positions_b = _arrays(b)
    shared = []
    for hashes, positions, other, fp in ((hashes_a, positions_a, keys_b, a), (hashes_b, positions_b, keys_a, b)):
        found = np.minimum(np.searchsorted(other, hashes), len(other) - 1)     # other: sorted, unique
        idx = positions[other[found] == hashes]
        if len(idx) == 0:
            return 0.0
        slices = get_copied_slices(idx, fp.k)
        shared.append(float(np.sum(slices[1] - slices[0])) / fp.token_coverage if len(fp.filtered_code) else 0.0)
    return (shared[0] + shared[1]) / 2


# --- the pairs ------------------------------------------------------------------------------------

@dataclass
class Pair:
    a: str
    b: str
    score: float                                     # the whole notebook's
    exercises: dict = field(default_factory=dict)    # {exercise: score}, both having answered it
    slices: object = None                            # copydetect's slices of the notebook documents


@dataclass
class Similarity:
    pairs: list                                      # Pair, best first (the listed ones)
    compared: int                                    # how many pairs were compared
    students: list
    references: list
    model_groups: dict                               # {exercise: [(fingerprint, [students])]}
    missing: dict                                    # {student: why nothing was compared}
    texts: dict                                      # {student: notebook document text}
    seconds: float = 0.0


def rank(prints: list, top: int = TOP) -> tuple:
    """(the ``top`` pairs by notebook score with their per-exercise scores, pairs compared).
    Students are compared with each other and with references; references not with each other."""
    scored = []
    for i, fa in enumerate(prints):
        for fb in prints[i + 1:]:
            if fa.reference and fb.reference:
                continue
            if NOTEBOOK not in fa.docs or NOTEBOOK not in fb.docs or not (fa.docs[NOTEBOOK].hashes
                                                                          and fb.docs[NOTEBOOK].hashes):
                continue
            scored.append(Pair(fa.student, fb.student, score(fa.docs[NOTEBOOK], fb.docs[NOTEBOOK])))
    scored.sort(key=lambda p: (-p.score, p.a, p.b))
    listed = scored[:top]
    by_name = {f.student: f for f in prints}
    for rank_, pair in enumerate(listed, start=1):
        fa, fb = by_name[pair.a], by_name[pair.b]
        if rank_ <= SHOWN_SIDE_BY_SIDE:
            pair.slices = compare(fa.docs[NOTEBOOK], fb.docs[NOTEBOOK])[1]
        for e in CODE_EXERCISES:
            if e.id in fa.docs and e.id in fb.docs:
                pair.exercises[e.id] = score(fa.docs[e.id], fb.docs[e.id])
    return listed, len(scored)


def model_groups(results: dict) -> dict:
    """{model exercise: [(architecture fingerprint, [students])], largest group first}."""
    groups = {}
    for e in MODEL_EXERCISES:
        by_print = {}
        for student, result in sorted(results.items()):
            found = result.architectures.get(e.function)
            if found:
                by_print.setdefault(found, []).append(student)
        groups[e.id] = sorted(by_print.items(), key=lambda g: (-len(g[1]), g[0]))
    return groups


def _read_answers(student, path, missing, strip, release):
    try:
        return answers_of(student, notebooks.read(path), strip).drop_stubs(release)
    except NotebookUnreadable as exc:
        missing[student] = str(exc)
        return None


def analyse(course, *, references=None, top: int = TOP) -> Similarity:
    """Compare every submission in ``course``/submitted/ (and the notebooks under ``references``)."""
    started = time.monotonic()
    course = Path(course)
    released = released_code(course)
    strip = released_strings(released)
    release = released_notebook(course)
    release_answers = answers_of("release", release, strip) if release is not None else Answers("release")
    boilerplate = boilerplate_hashes([without_strings(code, strip) for code in released])
    missing, answers = {}, []
    for hand_in in discover(course):
        if hand_in.notebook is None:
            missing[hand_in.student] = hand_in.error or "no notebook"
            continue
        found = _read_answers(hand_in.student, hand_in.notebook, missing, strip, release_answers)
        if found is not None:
            answers.append(found)
    refs = []
    if references is not None:
        root = Path(references)
        for path in sorted(root.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in path.parts:
                continue
            found = _read_answers(REFERENCE_PREFIX + path.relative_to(root).as_posix(), path, missing, strip,
                                   release_answers)
            if found is not None:
                refs.append(found)
    prints = [fingerprints(a, boilerplate) for a in answers] + [fingerprints(r, boilerplate, True) for r in refs]
    for f in prints:
        if NOTEBOOK not in f.docs or not f.docs[NOTEBOOK].hashes:
            missing.setdefault(f.student, "no answer beyond the released stubs")
    pairs, compared = rank(prints, top)
    results, _ = read_results(course)
    texts = {a.student: a.documents().get(NOTEBOOK, "") for a in [*answers, *refs]}
    return Similarity(pairs, compared, [a.student for a in answers], [r.student for r in refs],
                      model_groups(results), missing, texts, time.monotonic() - started)


# --- writing --------------------------------------------------------------------------------------

def csv_document(found: Similarity) -> str:
    rows = []
    for pair in found.pairs:
        rows.append([pair.a, pair.b, NOTEBOOK, f"{pair.score:.3f}"])
        rows += [[pair.a, pair.b, exercise, f"{score:.3f}"] for exercise, score in pair.exercises.items()]
    return csv_text(CSV_COLUMNS, rows)


def _segments(text: str, spans) -> list:
    """``text`` as [(piece, shared)], shared where copydetect found the pair's common code."""
    if spans is None or len(spans) == 0 or len(spans[0]) == 0:
        return [(text, False)]
    out, at = [], 0
    for start, end in sorted(zip(map(int, spans[0]), map(int, spans[1]), strict=False)):
        start, end = max(start, at), min(end, len(text))
        if start > at:
            out.append((text[at:start], False))
        if end > start:
            out.append((text[start:end], True))
        at = max(at, end)
    if at < len(text):
        out.append((text[at:], False))
    return out


def render(found: Similarity) -> str:
    pairs = []
    for rank_, pair in enumerate(found.pairs, start=1):
        row = {"rank": rank_, "a": pair.a, "b": pair.b, "score": f"{pair.score:.2f}", "flag": pair.score >= FLAG,
               "exercises": {e: f"{s:.2f}" for e, s in pair.exercises.items()}}
        if rank_ <= SHOWN_SIDE_BY_SIDE and pair.score >= FLAG and pair.slices is not None:
            row["left"] = _segments(found.texts.get(pair.a, ""), pair.slices[0])
            row["right"] = _segments(found.texts.get(pair.b, ""), pair.slices[1])
        pairs.append(row)
    scores = [p.score for p in found.pairs]
    groups = []
    for e in MODEL_EXERCISES:
        listed = found.model_groups.get(e.id, [])
        groups.append({"exercise": e.id, "title": e.title,
                       "groups": [{"fingerprint": fp[:12], "count": len(students), "students": students[:40],
                                   "more": max(0, len(students) - 40)} for fp, students in listed],
                       "recorded": sum(len(s) for _, s in listed)})
    return template("similarity.html").render(
        assignment=ASSIGNMENT_ID, pairs=pairs, flag=f"{FLAG:.2f}", compared=found.compared,
        students=len(found.students), references=found.references, exercises=[e.id for e in CODE_EXERCISES],
        median=f"{statistics.median(scores):.2f}" if scores else "-", noise=NOISE, groups=groups,
        missing=sorted(found.missing.items()), top=len(found.pairs))


def write_similarity(course, *, references=None, top: int = TOP) -> tuple:
    """Write similarity.html and similarity.csv into ``course``/grade-class/; (html, csv, Similarity)."""
    found = analyse(course, references=references, top=top)
    out = Path(course) / store.OUTPUT_DIR
    html, csv_path = out / HTML_NAME, out / CSV_NAME
    write_atomic(csv_document(found), csv_path, mode=0o644)
    write_atomic(render(found), html, mode=0o644)
    return html, csv_path, found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder similarity",
        description="Compare the submissions' answer cells (copydetect) and group the model builders by "
                    "architecture: grade-class/similarity.html and similarity.csv. Evidence for a human to "
                    "read, not a verdict.")
    parser.add_argument("assignment", help=f"the assignment id ({ASSIGNMENT_ID})")
    parser.add_argument("--course-dir", default=".", help="the course folder (default: current directory)")
    parser.add_argument("--reference", metavar="DIR",
                        help="past terms' notebooks (any .ipynb under DIR), compared with every student")
    parser.add_argument("--top", type=int, default=TOP, help="pairs listed (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    wrong = unknown_assignment(args.assignment)       # the one place the argument is read
    if wrong:
        print(f"similarity: {wrong}", file=sys.stderr)
        return 2
    course = Path(args.course_dir).resolve()
    if not (course / "submitted").is_dir():
        print(f"similarity: nothing to compare: {course / 'submitted'} does not exist", file=sys.stderr)
        return 2
    if args.reference and not Path(args.reference).is_dir():
        print(f"similarity: no such folder: {args.reference}", file=sys.stderr)
        return 2
    try:
        html, csv_path, found = write_similarity(course, references=args.reference, top=max(1, args.top))
    except OSError as e:
        print(f"similarity: could not write: {e}", file=sys.stderr)
        return 1
    print(f"{len(found.students)} students, {len(found.references)} references, {found.compared} pairs compared "
          f"in {found.seconds:.1f} s; evidence to read, not a verdict")
    for pair in found.pairs[:10]:
        mark = "  read" if pair.score >= FLAG else ""
        print(f"  {pair.score:.2f}  {bounded(pair.a, NAME_CHARS)} - {bounded(pair.b, NAME_CHARS)}{mark}")
    print(f"page: {html}\ncsv:  {csv_path}")
    return 0
