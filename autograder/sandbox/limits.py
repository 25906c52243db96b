"""The sandboxed worker's limits: what one submission's worker may use, in memory, processes, files
and time, and the range of uids a worker may be given when the grader runs as root (identity.py).
Their environment variables are declared in ``autograder/settings.py``."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 4 << 30      # TensorFlow alone maps ~1.5 GB
    processes: int = 512             # threads count too; TensorFlow starts dozens
    file_bytes: int = 256 << 20      # the largest file the student's code may write in /tmp
    scratch_bytes: int = 512 << 20   # the whole of the worker's /tmp or scratch folder (a tmpfs, so
                                     # memory; or checked between requests: process.scratch_overflow)
    cell_seconds: float = 30.0
    call_seconds: float = 20.0
    total_seconds: float = 240.0     # for everything the worker does for one submission
    grace_seconds: float = 5.0       # past a soft limit, how long the grader waits before it kills
    threads: int = 1                 # the worker's NumPy/BLAS threads (grade-class: each process's share)
    cpus: float = 1.0                # CPUs the worker's cgroup may use together (cpu.max / CFS quota)
    # As root, each worker runs as its own uid from this range (identity.py). Outside every range
    # systemd hands out or reserves (docs/UIDS-GIDS.md: system and regular users below 60000,
    # DynamicUser= 61184-65519, containers 524288-1879048191) and below 2**31, which some tools
    # still read as a signed number.
    uid_first: int = 1_900_000_000
    uid_count: int = 1024
    # Fork each worker from a zygote that has imported what the set-up cell imports (zygote.py),
    # rather than start it fresh; where the zygote cannot serve, the worker starts fresh anyway.
    zygote: bool = True
