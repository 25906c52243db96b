"""Synthetic class results, for the class report's tests and benchmark (benchmarks/bench_report.py).

``synthetic_results(n)`` makes ``n`` results as grade-class would store them, without grading
anything: every check of the real check list (check_catalogue.collect_checks), each passed or failed, a
failure naming one of its exercise's mistake codes (known_mistakes.mistake_codes) or none, plus a few
error results on both sides. Seeded, so the same ``n`` and seed give the same class.
"""

import random

from .. import known_mistakes
from ..check_catalogue import collect_checks
from ..errors import Side
from ..results import CheckResult, Result


def synthetic_results(n: int, *, seed: int = 0, fail_rate: float = 0.15, named_rate: float = 0.7,
                      student_error_rate: float = 0.02, grader_error_rate: float = 0.01) -> dict:
    """{student: Result} for ``n`` synthetic students (see the module's docstring)."""
    rng = random.Random(seed)
    codes = known_mistakes.mistake_codes()
    by_exercise = {}
    for code in codes:
        by_exercise.setdefault(code.split(".", 1)[0], []).append(code)
    checks = collect_checks()
    results = {}
    for i in range(n):
        student = f"student{i:04d}"
        draw = rng.random()
        if draw < student_error_rate:
            results[student] = Result.failed("the notebook is not valid JSON (truncated or corrupted?): "
                                             f"Expecting value: line 1 column {rng.randint(1, 3)}", Side.STUDENT,
                                             checks=checks)
            continue
        if draw < student_error_rate + grader_error_rate:
            results[student] = Result.failed("the sandboxed worker could not start on the grading machine",
                                             Side.GRADER, checks=checks)
            continue
        rows = []
        for check in checks:
            if rng.random() >= fail_rate:
                rows.append(CheckResult(check["id"], check["exercise"], check["max_points"], check["max_points"],
                                        True, "passed", counterpart=check["counterpart"]))
                continue
            choices = by_exercise.get(check["exercise"])
            # some mistakes are far more common than others: weights 1, 1/2, 1/3, ... in the tables' order
            code = (rng.choices(choices, weights=[1 / (k + 1) for k in range(len(choices))])[0]
                    if choices and rng.random() < named_rate else None)
            message = codes[code] if code else "the output differs from the right result (largest difference 0.5)"
            rows.append(CheckResult(check["id"], check["exercise"], 0.0, check["max_points"], False, message, code,
                                    check["counterpart"]))
        results[student] = Result.graded(rows, timings={"worker_start": round(rng.uniform(1.5, 3.5), 3),
                                                        "total": round(rng.lognormvariate(1.4, 0.35), 3)})
    return results
