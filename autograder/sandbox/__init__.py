"""The sandbox the student's code runs in: the worker (``worker.py``, a plain script that imports
nothing from this package) started with no network, only what it needs of the file system
(read-only, the grader's files hidden), a small private scratch folder, its own uid, and caps on
memory, processes, file size and time.

Two layers, chosen by ``choose_isolation`` (isolation.py; the README's "Security" section has the
table): bubblewrap's namespaces and mounts, where unprivileged user namespaces are allowed, and
the worker's own Landlock + seccomp layer (confine.py), which needs no privileges and no
namespaces and so also holds where bubblewrap cannot run. Where both work they stack. Where neither
does, grading refuses to start unless the instructor passed ``--allow-unsandboxed``.

Under bubblewrap the worker gets its own user, network, PID and mount namespaces; only the
allow-list is mounted (allowlist.py), read-only, with a private /tmp, /dev and /proc. As root the
user namespace maps root and the worker's leased uid (identity.py) to themselves, so that bwrap can
mount what root may read while the student's code runs as that real uid without capabilities, and
may not create further user namespaces; when the worker's process group is killed, every process
it started dies with the PID namespace. Without bubblewrap the worker is a plain subprocess started
from a private folder, in a 0700 scratch folder owned by its uid (a size-limited tmpfs as root, or
measured between requests), and confines itself before any student code runs. Memory, process
counts and CPU (its own share: ``Limits.cpus``) are capped by a cgroup when this machine lets us
make one, otherwise memory and processes by rlimits and the CPU is not capped.

- ``limits.py``: ``Limits``, what one submission's worker may use (their environment variables are
  read by ``autograder/settings.py``, at the edges, never here).
- ``isolation.py``: ``Isolation`` and ``choose_isolation``, the one place the mode is decided.
- ``allowlist.py``: what the worker may see, for bubblewrap's mounts and Landlock's rules alike.
- ``bwrap.py``: whether bubblewrap works here, its command line and mounts, the user-namespace
  helper, and its options passed through a memfd.
- ``confine.py``: Landlock + seccomp applied by a process to itself (loaded by the worker by path).
- ``identity.py``: a uid of its own for every worker (as root), and its scratch folder.
- ``cgroup.py``: ``ResourceGroup``, the cgroup that caps one worker's memory, processes and CPU and
  kills all of it.
- ``process.py``: ``SandboxedProcess`` (the worker forked from a zygote, or the bubblewrap or plain
  command; rlimits, ``kill()``), the worker's environment and thread caps, and where the worker's
  Python lives.
- ``zygote.py`` and ``zygote_main.py``: the zygote, which has imported what the set-up cell imports
  and forks each worker, and what the grader holds of a forked worker (``ForkedProcess``).
- ``worker.py``: the worker itself, run inside the sandbox.

A sandbox that cannot start raises ``autograder.errors.SandboxUnavailable`` (submission.py).
"""

from .allowlist import PACKAGE_DIR
from .bwrap import bubblewrap_available
from .isolation import Isolation, choose_isolation
from .limits import Limits
from .process import SandboxedProcess, SandboxWarning, thread_environment

__all__ = ["Limits", "SandboxedProcess", "SandboxWarning", "bubblewrap_available", "thread_environment",
           "PACKAGE_DIR", "Isolation", "choose_isolation"]
