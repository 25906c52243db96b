"""Where a worker's start goes, and what forking it from the zygote saves (issue 26).

    .venv/bin/python benchmarks/bench_zygote.py [--repeat 5]

Prints, as ratios to T = ``python -c "import tensorflow"`` measured in the same run: the interpreter's
start, each import of the release's set-up cell in the worker's environment (with the thread count
after each, and without the thread caps for comparison), bubblewrap's setup, the user namespace,
Landlock + seccomp, the uid lease, the cgroup and the scratch folder; then a worker's start to
ready plus the set-up cell, fresh (BN_AUTOGRADER_ZYGOTE=0's path) and forked from the zygote, in
each mode the zygote serves, with the worker's memory (the forked one's own pages are few).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_worker_start import import_seconds, load_average

from autograder import notebook
from autograder.channel import ANSWER_BYTES, LineReader, answer_prefix, parse_ready
from autograder.sandbox import Limits, bwrap, identity, process, zygote
from autograder.sandbox.cgroup import ResourceGroup
from autograder.sandbox.isolation import Isolation

# The set-up cell imports matplotlib.pyplot, numpy, keras; with KERAS_BACKEND=numpy Keras brings SciPy and JAX,
# imported first here so that each shows apart.
IMPORTS = ("numpy", "matplotlib.pyplot", "scipy", "scipy.special", "jax", "keras")

_PROBE = r"""
import os, sys, time, json, importlib.util
def threads():
    return len(os.listdir("/proc/self/task"))
steps, last = [], time.perf_counter()
spec = importlib.util.spec_from_file_location("w", sys.argv[1]); w = importlib.util.module_from_spec(spec)
spec.loader.exec_module(w); w._KerasWithoutTensorFlow.install()
for name in sys.argv[2:]:
    __import__(name)
    now = time.perf_counter(); steps.append([name, now - last, threads()]); last = now
import keras
keras.utils.set_random_seed(42)
now = time.perf_counter(); steps.append(["keras.utils.set_random_seed(42)", now - last, threads()]); last = now
m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
                      keras.layers.Flatten(), keras.layers.Dense(10)])
m.to_json()
now = time.perf_counter(); steps.append(["build a Conv2D+BN model, to_json", now - last, threads()]); last = now
import jax.numpy as jnp
jnp.zeros(3).sum().block_until_ready()
now = time.perf_counter(); steps.append(["first JAX computation", now - last, threads()]); last = now
print(json.dumps(steps))
"""


def median_of(repeat, fn):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_steps(env):
    done = subprocess.run([sys.executable, "-B", "-s", "-c", _PROBE, str(bwrap.WORKER_SCRIPT), *IMPORTS], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory(pid) -> str:
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        figures[key] = int(value.split()[0]) // 1024
    return (f"RSS {figures['Rss']} MiB, of which private (its own copy) "
            f"{figures['Private_Clean'] + figures['Private_Dirty']} MiB")


def setup_source():
    return notebook.instructor_setup_cells()["setup"]


def start_to_setup(mode: Isolation, setup: str, forked: bool):
    """(seconds to the ready answer, seconds of the set-up cell, forked?, its memory) for one worker."""
    start = time.monotonic()
    worker = process.SandboxedProcess(Limits(zygote=forked), isolation=mode)
    try:
        reader = LineReader(worker.process.stdout.fileno())
        line = reader.line(time.monotonic() + 60, ANSWER_BYTES["ready"], answer_prefix(0))
        assert isinstance(line, bytes) and parse_ready(line), (line, worker.startup_errors())
        ready = time.monotonic()
        request = {"op": "run_cell", "source": setup, "seconds": 60, "cell": 1, "id": 1}
        os.write(worker.process.stdin.fileno(), (json.dumps(request) + "\n").encode())
        answer = reader.line(time.monotonic() + 60, ANSWER_BYTES["cell"], answer_prefix(1))
        assert isinstance(answer, bytes) and b'"done"' in answer, answer
        cell = time.monotonic() - ready
        pids = [worker.process.pid, *(e.pid for e in identity.processes() if e.parent == worker.process.pid)]
        memory = _memory(worker.process.pid) if mode is Isolation.LANDLOCK else _memory(_deepest(pids[0]))
        return ready - start, cell, worker.forked, memory
    finally:
        worker.kill()


def _deepest(pid: int) -> int:
    """The last of ``pid``'s line of descendants: under bubblewrap, the worker itself."""
    while True:
        children = [e.pid for e in identity.processes() if e.parent == pid and e.state != "Z"]
        if not children:
            return pid
        pid = children[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average before: {load_average()}; {os.cpu_count()} CPUs; euid {os.geteuid()}")
    t = import_seconds("import tensorflow")
    print(f"T = python -c 'import tensorflow': {t:.2f} s\n")

    def row(what, seconds):
        print(f"  {what:<58} {seconds * 1000:8.1f} ms = {seconds / t:.3f} T")

    env = process.worker_environment("/tmp", "/tmp", 1)
    print("interpreter and imports (worker's environment, KERAS_BACKEND=numpy, thread caps 1):")
    row("python -B -s -c pass", median_of(args.repeat, lambda: subprocess.run(
        [sys.executable, "-B", "-s", "-c", "pass"], env=env, check=True)))
    steps = min((import_steps(env) for _ in range(2)), key=lambda s: sum(x[1] for x in s))
    for name, seconds, threads in steps:
        row(f"{'import ' if '(' not in name and ' ' not in name else ''}{name}  [threads after: {threads}]", seconds)
    uncapped = {k: v for k, v in env.items() if k not in process.thread_environment(1)}
    print("  without the thread caps, threads after each step:",
          ", ".join(f"{name} {threads}" for name, _, threads in import_steps(uncapped)))

    print("\nthe sandbox's steps (median of %d):" % args.repeat)
    limits = Limits()

    def lease():
        identity.lease_uid(limits.uid_first, limits.uid_count).close()
    row("uid lease (identity.lease_uid + close)", median_of(args.repeat, lease))
    row("cgroup (ResourceGroup + remove)", median_of(args.repeat, lambda: ResourceGroup(limits).remove()))

    def scratch():
        with tempfile.TemporaryDirectory(prefix="bench-zygote-") as parent:
            path = identity.make_scratch(parent, 1_900_000_999, 1_900_000_999)
            if identity.mount_scratch_tmpfs(path, limits.scratch_bytes, 1_900_000_999, 1_900_000_999):
                identity.unmount(path)
    row("scratch folder + tmpfs mount + unmount (Landlock mode)", median_of(args.repeat, scratch))
    allow = process.allowed()
    row("allow-list (process.allowed())", median_of(args.repeat, process.allowed))
    read_only, list_only = allow.landlock_rules()
    rules = json.dumps({"read_only": read_only, "list_only": list(list_only), "read_write": ["/tmp", *process.DEVICES]})
    code = ("import json, sys, time, importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('c', {str(bwrap.CONFINE_SCRIPT)!r})\n"
            "c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c)\n"
            "r = json.loads(sys.argv[1]); s = time.perf_counter()\n"
            "c.confine(r['read_only'], r['read_write'], list_only=r['list_only'])\n"
            "print(time.perf_counter() - s)")
    confines = [float(subprocess.run([sys.executable, "-B", "-s", "-c", code, rules], env=env, capture_output=True,
                                     text=True, check=True).stdout) for _ in range(args.repeat)]
    row(f"Landlock + seccomp (confine.confine, {len(read_only)} rules)", statistics.median(confines))
    if os.geteuid() == 0:
        def userns():
            fd = bwrap.user_namespace_fd(limits.uid_first)
            if fd is not None:
                os.close(fd)
        row("user namespace for bwrap (bwrap.user_namespace_fd)", median_of(args.repeat, userns))
    # bwrap's own cost: its namespaces and mounts around /usr/bin/true (Python starts faster inside,
    # where the allow-list hides most .pth files, so python -c pass would hide it)
    plain = median_of(args.repeat * 2, lambda: subprocess.run(["/usr/bin/true"], check=True))
    fd = bwrap.user_namespace_fd(limits.uid_first) if os.geteuid() == 0 else None
    argv = process.bubblewrap_argv(limits=limits, userns_fd=fd, drop_to=limits.uid_first)
    argv = argv[:len(argv) - 3] + ["/usr/bin/true"]
    in_bwrap = median_of(args.repeat * 2, lambda: subprocess.run(argv, check=True, pass_fds=() if fd is None
                                                                 else (fd,)))
    row("bwrap setup (bwrap around /usr/bin/true, minus /usr/bin/true)", in_bwrap - plain)
    inside = median_of(args.repeat * 2, lambda: subprocess.run(argv[:-1] + [process.interpreter(), "-B", "-c", "pass"],
                                                               check=True, pass_fds=() if fd is None else (fd,)))
    row("bwrap + python -B -c pass (its allow-list hides most .pth files)", inside)
    if fd is not None:
        os.close(fd)

    setup = setup_source()
    print(f"\na worker's start to ready, then the set-up cell (median of {args.repeat}):")
    modes = [Isolation.LANDLOCK] + ([Isolation.BWRAP_LANDLOCK] if bwrap.bubblewrap_available() else [])
    for mode in modes:
        for forked in (False, True):
            how = "forked from the zygote" if forked else "fresh"
            if forked:
                start = time.perf_counter()
                made = process.prestart_zygote(Limits(), isolation=mode)
                assert made is not None and made.ready(), "no zygote here"
                row(f"zygote start, {mode.value} (imports {', '.join(zygote.PRELOAD)})", time.perf_counter() - start)
            runs = [start_to_setup(mode, setup, forked) for _ in range(args.repeat)]
            assert all(r[2] == forked for r in runs), f"a worker was not {how}"
            ready, cell = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            row(f"{how}, {mode.value}: to ready", ready)
            row(f"{how}, {mode.value}: set-up cell", cell)
            row(f"{how}, {mode.value}: total", ready + cell)
            print(f"  its memory after the set-up cell: {runs[-1][3]}")
            if forked:
                print(f"  the zygote's memory: {_memory(made.pid)}")
    zygote.close_all()
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
