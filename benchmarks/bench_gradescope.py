"""What one Gradescope submission costs: ``gradescope-run`` on the solution in a container's budget.

Gradescope gives each submission a container with 0.5 vCPU and 768 MB by default. This runs
``python -m autograder gradescope-run`` on the solution notebook in a Gradescope-shaped root, inside
a cgroup made for the run with a CPU quota of ``--cpus`` (default 0.5) and, for the last run, a memory
cap; the cgroup hierarchies are bound over /sys/fs/cgroup in a mount namespace of the run's own, so
that the sandboxed worker's own groups nest inside it and are counted and capped with it, as in a
container. It prints, per run, the wall time as a ratio to T (``import tensorflow``, measured in the
same run without the quota), the peak memory of everything the run started, and the score.

The runs: "cold" (an empty grader cache: the training check trains the baseline and the model),
"after setup.sh" (the baseline cached, as the export's setup.sh leaves it: every Gradescope
submission starts from that image, so it trains its own model), the same under ``--memory-mb``
(default 768: graded or killed), "memo hit" (the model's architecture graded before: grade-class's
case, never Gradescope's), and "hog" (the solution with a cell that takes 3 GB, capped).
By default /sys/fs/cgroup is read-only inside, as Docker mounts it, so the worker is bounded by
rlimits from ``--worker-memory-mb``; ``--nested`` lets it make its own groups inside the run's.

    sudo .venv/bin/python benchmarks/bench_gradescope.py [--cpus 0.5] [--memory-mb 768]

Needs root and cgroup v1 (memory, cpu, pids) or v2, and util-linux's unshare.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

V1 = ("memory", "cpu", "pids")
PERIOD_US = 100_000


class Budget:
    """A cgroup (v1: one per controller; v2: one) with a CPU quota and an optional memory cap."""

    def __init__(self, cpus: float, memory_bytes: int | None):
        name = f"bench-gradescope-{uuid.uuid4().hex[:8]}"
        self.v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        self.dirs = [Path("/sys/fs/cgroup", name)] if self.v2 else [Path("/sys/fs/cgroup", c, name) for c in V1]
        for path in self.dirs:
            path.mkdir()
        quota = round(cpus * PERIOD_US)
        if self.v2:
            (self.dirs[0] / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            if memory_bytes:
                (self.dirs[0] / "memory.max").write_text(str(memory_bytes))
                (self.dirs[0] / "memory.swap.max").write_text("0")
        else:
            memory, cpu, _ = self.dirs
            (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
            if memory_bytes:
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                try:
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                except OSError:
                    pass

    def wrap(self, command: list, *, docker_like: bool) -> list:
        """``command`` run inside the group, in a mount namespace of its own where /sys/fs/cgroup is
        either an empty read-only folder (``docker_like``: as Docker mounts it by default, so the worker
        gets rlimits, not a group of its own) or this group bound over its hierarchies (the worker's
        groups nest inside it)."""
        if self.v2:
            enter = f"echo $$ > {self.dirs[0]}/cgroup.procs"
            binds = f"mount --bind {self.dirs[0]} /sys/fs/cgroup"
        else:
            enter = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in self.dirs)
            binds = "; ".join(f"mount --bind {d} /sys/fs/cgroup/{c}" for c, d in zip(V1, self.dirs, strict=True))
        if docker_like:
            binds = "mount -t tmpfs -o ro,size=1k none /sys/fs/cgroup"
        script = f"{enter}; {binds}; exec \"$@\""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.dirs[0] / name).read_text())

    def oom_killed(self) -> bool:
        events = self.dirs[0] / ("memory.events" if self.v2 else "memory.oom_control")
        text = events.read_text()
        return any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0 for line in text.splitlines())

    def remove(self):
        for path in self.dirs:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def seconds_of(command, env) -> tuple:
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.monotonic() - started, done


def lay_out(base: Path, name: str, notebook: Path, settings) -> Path:
    from autograder.platforms.gradescope import CONFIG_NAME, GradescopeOptions  # noqa: PLC0415
    root = base / name
    for folder in ("source", "submission", "results"):
        (root / folder).mkdir(parents=True)
    shutil.copy(notebook, root / "submission" / "batchnorm.ipynb")
    (root / "source" / CONFIG_NAME).write_text(json.dumps({"options": GradescopeOptions().to_dict(),
                                                           "settings": settings.to_dict()}))
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=float, default=0.5, help="the container's CPUs (Gradescope's default 0.5)")
    parser.add_argument("--memory-mb", type=int, default=768, help="the container's memory in the capped runs")
    parser.add_argument("--worker-memory-mb", type=int, default=1024,
                        help="the sandboxed worker's memory (BN_AUTOGRADER_MEMORY_MB at export; default 1024)")
    parser.add_argument("--nested", action="store_true",
                        help="let the worker make its cgroups inside the container's (default: as in Docker, "
                             "where /sys/fs/cgroup is read-only and the worker is bounded by rlimits)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("needs root and util-linux's unshare", file=sys.stderr)
        return 2
    from dataclasses import replace  # noqa: PLC0415

    import nbformat  # noqa: PLC0415

    from autograder import synthetic_students as students  # noqa: PLC0415
    from autograder import trainingcache  # noqa: PLC0415
    from autograder.settings import Settings  # noqa: PLC0415

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory(prefix="bench-gradescope-") as tmp:
        base = Path(tmp)
        env["TMPDIR"] = tmp
        notebook = students.write_submission(students.STUDENTS["full_marks"], base / "full_marks.ipynb")
        hog = nbformat.read(notebook, as_version=4)      # the solution, and a cell that takes 3 GB
        hog.cells.append(nbformat.v4.new_code_cell("import numpy as np\nhoard = np.ones(3 << 30, dtype=np.uint8)"))
        nbformat.write(hog, base / "hog.ipynb")
        t, _ = seconds_of([sys.executable, "-c", "import tensorflow"], env)
        print(f"T (import tensorflow, no quota) = {t:.1f} s; load {os.getloadavg()[0]:.1f}; {args.cpus:g} CPU quota; "
              f"worker memory {args.worker_memory_mb} MiB; worker cgroups: {'nested' if args.nested else 'none'}")
        print(f"{'run':<24} {'seconds':>8} {'x T':>6} {'peak MiB':>9}  outcome")
        cap = args.memory_mb << 20
        runs = (("cold", notebook, None), ("after setup.sh", notebook, None), ("after setup.sh", notebook, cap),
                ("memo hit", notebook, cap), ("hog", base / "hog.ipynb", cap))
        for number, (name, hand_in, capped) in enumerate(runs):
            cache = base / f"cache-{number}"
            if number:           # the cold run's cache: the baseline, and the model's memo for "memo hit" only
                shutil.copytree(base / "cache-0", cache, ignore=None if name == "memo hit" else
                                shutil.ignore_patterns(trainingcache.MEMO))
            settings = Settings(cache_dir=cache)
            settings = replace(settings, limits=replace(settings.limits, memory_bytes=args.worker_memory_mb << 20))
            root = lay_out(base, f"run-{number}", hand_in, settings)
            budget = Budget(args.cpus, capped)
            try:
                command = budget.wrap([sys.executable, "-m", "autograder", "gradescope-run", "--root", str(root)],
                                      docker_like=not args.nested)
                seconds, done = seconds_of(command, env)
                peak, killed = budget.peak_bytes(), budget.oom_killed()
            finally:
                budget.remove()
            results = root / "results" / "results.json"
            doc = json.loads(results.read_text()) if results.exists() else {}
            if "score" in doc:
                outcome = f"score {doc['score']:g}, isolation {doc['extra_data']['isolation']}"
            else:
                outcome = f"no score (exit {done.returncode}{', OOM-killed' if killed else ''}): " + \
                          str(doc.get("extra_data", {}).get("grader_failure", done.stderr[-300:]))[:300]
            label = name + (f" ({args.memory_mb} MiB)" if capped else "")
            print(f"{label:<24} {seconds:>8.1f} {seconds / t:>6.2f} {peak / 2**20:>9.0f}  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
