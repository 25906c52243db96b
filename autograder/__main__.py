"""``python -m autograder <verb>``: the workflow's verbs, each a thin front for one module."""

import importlib
import logging
import sys

VERBS = {
    "assign": ("autograder.assign", "regenerate release/ and solutions/ from source/"),
    "grade": ("autograder.grade", "grade one notebook in isolation and write results.json"),
    "grade-class": ("autograder.classroom.cli", "grade every submission of an assignment in parallel"),
    "report": ("autograder.classroom.report",
               "the class report: mistakes, pass rates, errors (grade-class/report.html)"),
    "similarity": ("autograder.classroom.similarity",
                   "similar submissions, as evidence to read (grade-class/similarity.html)"),
    "export": ("autograder.platforms.export",
               "the file a platform imports: export canvas (gradebook CSV), export gradescope (zip)"),
    "canvas": ("autograder.platforms.canvas_push", "canvas push: post the changed grades through Canvas' API"),
    "demo": ("autograder.demo", "set up, release and grade the bundled demo class end to end"),
    "data": ("autograder.data", "link Fashion-MNIST from Debian's package into Keras' cache"),
    "check": ("autograder.student.check", "run a notebook as the grader does, with its visible tests (students)"),
    "student-kit": ("autograder.student.kit", "build the wheel students install to run `check`"),
    "gradescope-run": ("autograder.platforms.gradescope",
                       "grade the one notebook of a Gradescope submission into its results.json"),
}


def usage() -> str:
    lines = ["usage: python -m autograder <verb> [options]", "", "verbs:"]
    width = max(map(len, VERBS))
    lines += [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in VERBS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        print(usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    # Progress and notes go through logging, to stderr; results and tables are printed to stdout.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    module = importlib.import_module(VERBS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
