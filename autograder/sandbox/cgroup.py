"""A cgroup (v1 or v2) for one worker: caps its memory and processes, tells whether the kernel's OOM
killer ended one of them, and kills all of it. Where no cgroup can be made, ``active`` is False and
the worker is capped by rlimits instead (process.py)."""

import os
import signal
import time
import uuid
from pathlib import Path

from .limits import Limits


class ResourceGroup:
    """A cgroup (v1 or v2) that caps memory and processes for one worker and can kill all of it."""

    ROOTS_V1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    ROOT_V2 = "/sys/fs/cgroup"
    PARENT = "bn-autograder"

    def __init__(self, limits: Limits):
        self.dirs = []
        name = uuid.uuid4().hex[:12]
        try:
            if Path(self.ROOT_V2, "cgroup.controllers").exists():
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
        for path in self.dirs:
            (path / "cgroup.procs").write_text(str(os.getpid()))

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
