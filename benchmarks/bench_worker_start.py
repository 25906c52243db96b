"""The worker's start with each Keras backend, and whether the student's models come out the same.

    .venv/bin/python benchmarks/bench_worker_start.py [--repeat 3]

For each backend the sandboxed worker may use (sandbox.process.WORKER_KERAS_BACKEND), starts the worker on
the solution notebook ``--repeat`` times (bubblewrap, Python, the notebook's set-up cell, which
imports Keras, and the solution cells) and asks it for every model the checks ask for. Prints the
start times against T = ``python -c "import tensorflow"`` measured in the same run, and whether
each model's config (its JSON, names included) is identical under both backends. Exits 1 when a
config differs or a cell fails: then the NumPy backend would not give the same results.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import synthetic_students as students
from autograder.sandbox import process
from autograder.submission import Submission

# Every model the hidden checks ask the worker for (function, keyword arguments).
MODEL_CALLS = [("build_model_with_bn", {}), ("build_model_with_bn", {"input_shape": (32, 32, 3), "num_classes": 5}),
               ("build_modern_cnn", {}), ("build_modern_cnn", {"input_shape": (28, 28, 1), "num_classes": 10}),
               ("build_modern_cnn", {"input_shape": (64, 64, 3), "num_classes": 5})]
STUDENTS = ("full_marks", "old_placement", "no_bn", "modern_fixed_shape", "modern_no_dropout")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_seconds(code: str, env=None, with_cpu=False):
    """Wall time of ``python -c code`` in a fresh interpreter, best of two (the disk cache warm);
    with ``with_cpu``, (wall, CPU seconds of that run)."""
    best = (float("inf"), 0.0)
    for _ in range(2):
        start, cpu = time.perf_counter(), _children_cpu()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
        best = min(best, (time.perf_counter() - start, _children_cpu() - cpu))
    return best if with_cpu else best[0]


def start_and_ask(notebook: Path):
    """(seconds until the worker has run every cell, {call: config JSON or error}, [cell errors])"""
    with Submission.open(notebook) as submission:
        start = time.perf_counter()
        errors = [o.error for o in submission.cell_errors()]
        seconds = time.perf_counter() - start
        configs = {}
        for function, kwargs in MODEL_CALLS:
            try:
                configs[(function, tuple(sorted(kwargs.items())))] = submission.model_config(function, **kwargs)
            except Exception as error:  # noqa: BLE001 - compared as it is
                configs[(function, tuple(sorted(kwargs.items())))] = f"{type(error).__name__}: {error}"
    return seconds, configs, errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="worker starts per backend (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"load average before: {load_average()}")
    t = import_seconds("import tensorflow")
    print(f"T = python -c 'import tensorflow': {t:.2f} s")
    # The set-up cell's imports. CPU close to wall means that starting the worker earlier, alongside
    # another submission's checks, cannot save wall time when every core is already busy.
    for backend in ("tensorflow", "numpy"):
        wall, cpu = import_seconds("import keras, matplotlib.pyplot", {"KERAS_BACKEND": backend}, with_cpu=True)
        print(f"python -c 'import keras, matplotlib.pyplot' with KERAS_BACKEND={backend}: {wall:.2f} s "
              f"= {wall / t:.2f} T, {cpu:.2f} s of CPU")

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        notebooks = {name: students.write_submission(students.STUDENTS[name], Path(tmp) / name / "batchnorm.ipynb")
                     for name in STUDENTS}
        configs = {}
        for backend in ("tensorflow", "numpy"):
            process.WORKER_KERAS_BACKEND = backend
            times = []
            for _ in range(args.repeat):
                seconds, got, errors = start_and_ask(notebooks["full_marks"])
                times.append(seconds)
                if errors:
                    print(f"  {backend}: a cell failed: {errors[0]}")
                    ok = False
            for name, notebook in notebooks.items():
                configs[(backend, name)] = start_and_ask(notebook)[1] if name != "full_marks" else got
            print(f"worker start, KERAS_BACKEND={backend} (solution notebook, {args.repeat} starts): "
                  f"median {statistics.median(times):.2f} s = {statistics.median(times) / t:.2f} T "
                  f"(min {min(times):.2f}, max {max(times):.2f})")
        same = differ = 0
        for name in STUDENTS:
            for call, config in configs[("tensorflow", name)].items():
                if configs[("numpy", name)].get(call) == config:
                    same += 1
                else:
                    differ += 1
                    print(f"  DIFFERENT: {name} {call[0]}{dict(call[1])}")
        print(f"model configs identical under both backends: {same} of {same + differ} "
              f"({len(STUDENTS)} students x {len(MODEL_CALLS)} calls)")
        ok = ok and differ == 0
    print(f"load average after: {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
