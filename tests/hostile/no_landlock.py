"""Run a command on a kernel without Landlock, as it were: ``python no_landlock.py COMMAND...``.

A seccomp filter makes Landlock's three syscalls fail with ENOSYS, which is what a kernel before
5.13 (or one built without CONFIG_SECURITY_LANDLOCK) answers; every other call is allowed. The
filter binds this process and everything it starts (a grader process, its workers), so
``confine.probe()`` finds no Landlock anywhere below it. Used by tests/test_escapes.py for the
"neither" mode, with a failing ``bwrap`` first on PATH, and by tests/test_worker_boundary.py for the
"bwrap" mode (bubblewrap alone).
"""

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

CONFINE = Path(__file__).resolve().parents[2] / "autograder" / "sandbox" / "confine.py"


def _confine():
    spec = importlib.util.spec_from_file_location("_no_landlock_confine", CONFINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    confine = _confine()
    arch = confine.ARCHES[confine.machine_arch()]
    enosys = confine.SECCOMP_RET_ERRNO | 38                  # ENOSYS
    landlock = (confine.SYS_LANDLOCK_CREATE_RULESET, confine.SYS_LANDLOCK_ADD_RULE,
                confine.SYS_LANDLOCK_RESTRICT_SELF)
    program = [(confine.BPF_LD_W_ABS, 0, 0, confine.DATA_ARCH), (confine.BPF_JEQ_K, 1, 0, arch.audit),
               (confine.BPF_RET_K, 0, 0, confine.SECCOMP_RET_ALLOW), (confine.BPF_LD_W_ABS, 0, 0, confine.DATA_NR)]
    for number in landlock:
        program += [(confine.BPF_JEQ_K, 0, 1, number), (confine.BPF_RET_K, 0, 0, enosys)]
    program.append((confine.BPF_RET_K, 0, 0, confine.SECCOMP_RET_ALLOW))
    instructions = (confine._SockFilter * len(program))(*[confine._SockFilter(*i) for i in program])
    fprog = confine._SockFprog(len(program), instructions)
    if os.geteuid() != 0:                   # root may install a filter without no_new_privs
        confine.set_no_new_privs()
    confine._prctl(confine.PR_SET_SECCOMP, confine.SECCOMP_MODE_FILTER, ctypes.byref(fprog))
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
