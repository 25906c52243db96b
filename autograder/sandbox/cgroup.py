"""A cgroup (v1 or v2) for one worker: caps its memory and processes, gives it its own share of the
CPU, tells whether the kernel's OOM killer ended one of them, and kills all of it. Where no cgroup
can be made, ``active`` is False and the worker is capped by rlimits instead (process.py).

The CPU share is optional: v2 ``cpu.max`` (Limits.cpus CPUs) and ``cpu.weight`` where the hierarchy
hands the cpu controller down, v1 a group of the cpu hierarchy with a CFS quota and the default
``cpu.shares``. However many processes (or setsid sessions, each a scheduler autogroup) a student
starts, together they get that much CPU and no more. Where the cpu controller is missing or not
delegated, ``cpu_limited`` is False and the memory and process caps hold alone."""

import os
import signal
import time
import uuid
from pathlib import Path

from .limits import Limits


class ResourceGroup:
    """A cgroup (v1 or v2) that caps memory and processes for one worker and can kill all of it."""

    ROOTS_V1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpu": "/sys/fs/cgroup/cpu"}
    ROOT_V2 = "/sys/fs/cgroup"
    PARENT = "bn-autograder"
    CPU_PERIOD_US = 100_000
    CPU_MIN_QUOTA_US = 1_000          # the kernel refuses a smaller quota

    def __init__(self, limits: Limits):
        self.dirs = []
        self.cpu_limited = False      # the group also caps the CPU it uses (Limits.cpus)
        self._cpu_dir = None          # v1 only: the cpu hierarchy's group (in v2 it is the one group)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"     # its grader's pid: sweep_orphans
        v2 = Path(self.ROOT_V2, "cgroup.controllers").exists()
        try:
            if v2:
                self._make(Path(self.ROOT_V2), name, {"memory.max": limits.memory_bytes,
                                                      "pids.max": limits.processes, "memory.swap.max": 0},
                           required=("memory.max", "pids.max"))
            else:
                self._make(Path(self.ROOTS_V1["memory"]), name, {"memory.limit_in_bytes": limits.memory_bytes},
                           required=("memory.limit_in_bytes",))
                self._make(Path(self.ROOTS_V1["pids"]), name, {"pids.max": limits.processes},
                           required=("pids.max",))
        except OSError:
            self.remove()
            self.dirs = []
            return
        quota = max(self.CPU_MIN_QUOTA_US, round(limits.cpus * self.CPU_PERIOD_US))
        self.cpu_limited = self._limit_cpu_v2(self.dirs[0], quota) if v2 else self._limit_cpu_v1(name, quota)

    def _limit_cpu_v2(self, path: Path, quota: int) -> bool:
        """cpu.max and cpu.weight in the worker's v2 group, where the parent could enable the cpu
        controller for it (after the group was made: the parent's subtree_control lists cpu)."""
        try:
            if not (path / "cpu.max").exists():
                return False
            (path / "cpu.weight").write_text("100")
            (path / "cpu.max").write_text(f"{quota} {self.CPU_PERIOD_US}")
            return (path / "cpu.max").read_text().split()[0] == str(quota)
        except (OSError, IndexError):
            return False

    def _limit_cpu_v1(self, name: str, quota: int) -> bool:
        """A group of the v1 cpu hierarchy with a CFS quota; where it cannot be made, nothing of it
        is left and the memory and pids groups stay as they are."""
        made = len(self.dirs)
        try:
            self._make(Path(self.ROOTS_V1["cpu"]), name,
                       {"cpu.cfs_period_us": self.CPU_PERIOD_US, "cpu.cfs_quota_us": quota, "cpu.shares": 1024},
                       required=("cpu.cfs_period_us", "cpu.cfs_quota_us"))
            if int((self.dirs[-1] / "cpu.cfs_quota_us").read_text()) != quota:
                raise OSError("the CFS quota did not take")
        except (OSError, ValueError):
            for path in self.dirs[made:]:
                try:
                    path.rmdir()
                except OSError:
                    pass
            del self.dirs[made:]
            return False
        self._cpu_dir = self.dirs[-1]
        return True

    def _make(self, root: Path, name: str, settings: dict, required):
        """Make root/PARENT/name and write its limits; OSError unless root is a real cgroup
        hierarchy and the limits exist (a plain folder would cap nothing and pass for a cgroup)."""
        if not (root / "cgroup.procs").exists():
            raise OSError(f"{root} is not a cgroup hierarchy")
        (root / self.PARENT).mkdir(exist_ok=True)
        if (root / "cgroup.controllers").exists():     # v2: the parent must hand its controllers down
            try:
                (root / self.PARENT / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError:
                pass            # then the limits are missing below and rlimits take over
            try:
                (root / self.PARENT / "cgroup.subtree_control").write_text("+cpu")
            except OSError:
                pass            # no cpu controller here: the group caps no CPU (cpu_limited)
        path = root / self.PARENT / name
        path.mkdir()
        self.dirs.append(path)
        if not all((path / key).exists() for key in (*required, "cgroup.procs")):
            raise OSError(f"{path} lacks {required}")
        for key, value in settings.items():
            if (path / key).exists():
                (path / key).write_text(str(value))

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def join(self):
        """Called in the child before exec: move this process (and so all it starts) into the group."""
        self.add(os.getpid())

    def add(self, pid: int):
        """Move the process ``pid`` (and so all it starts from then on) into the group: a worker the
        zygote forked, which waits for it before it goes on."""
        for path in self.dirs:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError:
                if path != self._cpu_dir:       # the CPU share is optional; memory and pids are not
                    raise

    def out_of_memory(self) -> bool:
        """The kernel's OOM killer ended a process of the group (where the kernel counts kills;
        elsewhere: the group ever hit its memory limit)."""
        for path in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    kills = [int(line.split()[1]) for line in (path / name).read_text().splitlines()
                             if line.startswith("oom_kill ")]
                except (OSError, ValueError, IndexError):
                    continue
                if kills:
                    return kills[0] > 0
            try:
                if int((path / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def pids(self) -> list:
        found = set()
        for path in self.dirs:
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def kill_all(self):
        """SIGKILL everything in the group until it is empty (a fork bomb refills it for a while)."""
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

    @classmethod
    def sweep_orphans(cls) -> int:
        """Kill and remove the groups of grader processes that died without removing them (killed
        by a time-out, the OOM killer, a power cut): whatever their students' code left running
        ends now. A group is named after its grader's pid; a pid still alive is left alone, even
        if it is another process now. How many groups were removed."""
        parents = [Path(cls.ROOT_V2, cls.PARENT), *(Path(root, cls.PARENT) for root in cls.ROOTS_V1.values())]
        names = set()
        for parent in parents:
            try:
                names.update(entry.name for entry in os.scandir(parent) if entry.is_dir())
            except OSError:
                continue
        removed = 0
        for name in sorted(names):
            owner = name.split("-", 1)[0]
            if "-" not in name or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            orphan = cls.__new__(cls)
            orphan.dirs = [parent / name for parent in parents if (parent / name).is_dir()]
            orphan.remove()
            removed += 1
        return removed

    def remove(self):
        self.kill_all()
        for path in self.dirs:
            for _ in range(200):     # rmdir fails while killed processes are not yet reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(0.01)
