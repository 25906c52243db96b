"""Gradescope: one submission graded inside Gradescope's container, written as its ``results.json``.

    python -m autograder gradescope-run --root /autograder

Gradescope's layout (gradescope-autograders.readthedocs.io, "Autograder Specifications"): the zip
``export gradescope`` writes is unpacked into ``ROOT/source`` (with ``gradescope.json``, the options
below), the submission arrives in ``ROOT/submission/`` and the results go to ``ROOT/results/results.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

CONFIG_NAME = "gradescope.json"       # at the zip's root, so ROOT/source/gradescope.json
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")   # Gradescope's words


@dataclass(frozen=True)
class GradescopeOptions:
    """What the exported autograder decides about what students see; ``export gradescope`` writes
    them with the grader's settings (settings.Settings) into CONFIG_NAME."""
    hidden_visibility: str = "after_due_date"     # a hidden check's entry
    counterpart_visibility: str = "visible"       # a hidden check whose property the notebook's visible test asserts too
    leaderboard: bool = False                     # a leaderboard entry: the BN model's lead in the training check

    def __post_init__(self):
        for name in ("hidden_visibility", "counterpart_visibility"):
            if getattr(self, name) not in VISIBILITIES:
                raise ValueError(f"{name} must be one of {', '.join(VISIBILITIES)}, not {getattr(self, name)!r}")
        if not isinstance(self.leaderboard, bool):
            raise ValueError("leaderboard must be true or false")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc) -> GradescopeOptions:
        """The options back from CONFIG_NAME's "options"; ValueError when they are not options."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict) or set(doc) - {f.name for f in fields(cls)}:
            raise ValueError(f"the Gradescope options are not an object of {', '.join(f.name for f in fields(cls))}")
        return cls(**doc)
