"""What a hostile notebook costs the grader, against an honest one graded the same way.

    .venv/bin/python benchmarks/bench_hostile.py [--repeat 3] [--keep DIR]

Writes two notebooks: an honest one (NumPy set-up, a correct ``manual_batch_norm``) and a forger
that writes on the worker's answer pipe (tests/conftest.py's attack cells: three forged 96 MiB
lines that answer nothing, a 20 KB forged error with terminal escapes, a real ``os._exit``, forty
forged "crashed" answers, a 2 MB answer, processes left behind). Grades each ``--repeat`` times
with ``python -m autograder grade`` in a fresh process and prints, for each, the median wall time,
the grader process's own peak memory (VmHWM, its workers not included) and results.json's size,
and the ratio of the forger's wall time to the honest one's, measured in the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import (
    CHANNEL_TOOLS,
    ESCAPES,
    FLOOD,
    FORGED_CRASHES,
    HUGE_ANSWER,
    LONG_ERROR,
    MANUAL_BN,
    REAL_CRASH,
    SETUP,
    stray_processes,
)

# Runs `python -m autograder grade ...` and prints the process's own peak memory on stderr.
MEASURED = ("import runpy, sys\n"
            "sys.argv = ['autograder', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('autograder', run_name='__main__')\n"
            "finally:\n"
            "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "    print('PEAK', int(peak.split()[1]) * 1024, file=sys.stderr)\n")


def write(path: Path, cells) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def grade_once(notebook: Path, output: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", MEASURED, "grade", str(notebook), "--output", str(output)],
                          capture_output=True, text=True, timeout=900, cwd=output.parent)
    wall = time.monotonic() - started
    peak = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK ")]
    result = json.loads(output.read_text())
    return {"wall": wall, "peak": peak[0] if peak else float("nan"), "size": output.stat().st_size,
            "status": result["status"], "side": result["error_side"], "total": result["total"],
            "exit": done.returncode}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the notebooks and results here (default: a temporary folder)")
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    notebooks = {
        "honest": write(folder / "honest" / "submission.ipynb", (SETUP, MANUAL_BN)),
        "forger": write(folder / "forger" / "submission.ipynb",
                        (SETUP, CHANNEL_TOOLS, FLOOD, LONG_ERROR, ESCAPES, REAL_CRASH, FORGED_CRASHES, HUGE_ANSWER,
                         stray_processes("9799"), MANUAL_BN)),
    }
    runs = {name: [] for name in notebooks}
    for _ in range(args.repeat):            # in turn, so that a drift in the machine's speed hits both
        for name, notebook in notebooks.items():
            runs[name].append(grade_once(notebook, notebook.parent / "results.json"))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeat} runs each")
    for name, found in runs.items():
        last = found[-1]
        print(f"{name:7} wall {statistics.median(r['wall'] for r in found):6.2f} s (median)   "
              f"grader peak {max(r['peak'] for r in found) / 2**20:7.1f} MiB   "
              f"results.json {last['size'] / 1024:6.1f} KiB   "
              f"{last['status']} ({last['side'] or 'no error'}), {last['total']:g} points, exit {last['exit']}")
    ratios = [f["wall"] / h["wall"] for f, h in zip(runs["forger"], runs["honest"], strict=True)]
    print(f"forger / honest wall time: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
