"""Which isolation grades, decided by one function for every path that grades (``grade``,
``grade-class``'s grader processes, Dask workers, the nbgrader bridge): ``choose_isolation``.

The modes, best first (results.json's "isolation" records the one a worker ran in):

* ``bwrap+landlock``: bubblewrap's namespaces and allow-list mounts, and inside them the worker's
  own Landlock + seccomp layer (confine.py); the two stack.
* ``bwrap``: bubblewrap works but the kernel has no Landlock (before 5.13, or not enabled) or no
  seccomp table here: still isolation, with one layer.
* ``landlock``: no bubblewrap (no unprivileged user namespaces: Docker's and Kubernetes' default
  seccomp profiles, Ubuntu 24.04's AppArmor rule, many HPC nodes): Landlock + seccomp alone, which
  need no privileges and no namespaces.
* ``none``: neither. Grading refuses to start (``SandboxUnavailable``, saying why and what to
  install) unless the instructor passed ``--allow-unsandboxed``: then it is logged and recorded.

What the machine offers is probed once per process (bwrap is run once; confine.probe() starts a
short-lived child, ~0.2 s) and cached.
"""

import logging
from dataclasses import dataclass
from enum import Enum

from ..errors import SandboxUnavailable
from . import bwrap, confine

log = logging.getLogger(__name__)


class Isolation(str, Enum):
    BWRAP_LANDLOCK = "bwrap+landlock"
    BWRAP = "bwrap"
    LANDLOCK = "landlock"
    NONE = "none"

    @property
    def bubblewrap(self) -> bool:
        return self in (Isolation.BWRAP_LANDLOCK, Isolation.BWRAP)

    @property
    def landlock(self) -> bool:
        """The worker confines itself (Landlock + seccomp, confine.py)."""
        return self in (Isolation.BWRAP_LANDLOCK, Isolation.LANDLOCK)


@dataclass(frozen=True)
class Offer:
    """What this machine offers the sandbox."""
    bubblewrap: bool
    bubblewrap_reason: str         # "" when it works
    confinement: bool              # Landlock and seccomp can both be applied
    confinement_reason: str        # "" when they can
    landlock_abi: int

    def best(self) -> Isolation:
        if self.bubblewrap:
            return Isolation.BWRAP_LANDLOCK if self.confinement else Isolation.BWRAP
        return Isolation.LANDLOCK if self.confinement else Isolation.NONE


INSTALL_HINT = ("To grade in isolation, either install bubblewrap and allow unprivileged user namespaces "
                "(apt-get install bubblewrap; in a container, run it with user namespaces allowed, e.g. "
                "Docker's --security-opt seccomp=unconfined or a profile that allows unshare/clone of a user "
                "namespace; on Ubuntu 24.04, sysctl kernel.apparmor_restrict_unprivileged_userns=0), or run "
                "a Linux kernel >= 5.13 with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y and landlock in "
                "the lsm= boot parameter; >= 6.7 for its network rules) on x86_64 or aarch64. To grade "
                "WITHOUT isolation, accepting that student code may then read the grader's files and reach the "
                "network, "
                "pass --allow-unsandboxed (c.IsolatedGrade.allow_unsandboxed = True for nbgrader).")

_offer = None
_warned = False


def probe() -> Offer:
    """What this machine offers, probed once per process."""
    global _offer
    if _offer is None:
        works, why_not = bwrap.bubblewrap_status()
        support = confine.probe()
        reasons = []
        if not support.landlock_abi:
            reasons.append(f"no Landlock: {support.landlock_reason}")
        if not support.seccomp:
            reasons.append(f"no seccomp filter: {support.seccomp_reason}")
        _offer = Offer(works, why_not, not reasons, "; ".join(reasons), support.landlock_abi)
    return _offer


def refusal(offer: Offer) -> str:
    """Why nothing isolates here, and what to install."""
    return (f"no isolation is available on this machine, so grading refuses to start: "
            f"{offer.bubblewrap_reason or 'bubblewrap does not work'}; and {offer.confinement_reason}. "
            + INSTALL_HINT)


def choose_isolation(*, allow_unsandboxed: bool = False, never_refuse: bool = False) -> Isolation:
    """The best isolation this machine offers. When there is none, raise SandboxUnavailable (why,
    and what to install), unless ``allow_unsandboxed`` (the instructor accepts the risk: logged) or
    ``never_refuse`` (the student's own check of their notebook, which grades nothing): NONE."""
    global _warned
    offer = probe()
    chosen = offer.best()
    if chosen is not Isolation.NONE:
        return chosen
    if never_refuse:
        return chosen
    if not allow_unsandboxed:
        raise SandboxUnavailable(refusal(offer))
    if not _warned:
        _warned = True
        log.warning("GRADING WITHOUT ISOLATION (--allow-unsandboxed): student code runs with the grader's "
                    "files and the network within its reach, and every result records isolation \"none\". "
                    "Why: %s; %s", offer.bubblewrap_reason, offer.confinement_reason)
    return chosen
