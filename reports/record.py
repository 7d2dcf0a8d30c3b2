"""The plan as recorded: the clinician's decisions, the sign-off and what changed since the
previous version. The engine's ``CarePlan`` is the suggestion; this is what the clinician made
of it. Reports print the decision of record and keep the original suggestion in the appendix.

Built by the service (``api/decisions.py``) from stored rows; the command line, which has no
storage, renders a plan without one (every item still a suggestion, the document a DRAFT).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "DECISION_LABELS",
    "Change",
    "Comment",
    "Decision",
    "DecisionStatus",
    "Recorded",
    "ReviewFlag",
    "Signature",
]

DecisionStatus = Literal["accepted", "modified", "declined"]
DECISION_LABELS: dict[str, str] = {
    "accepted": "Accepted",
    "modified": "Modified",
    "declined": "Declined",
    "suggested": "Suggested",
}


@dataclass(frozen=True)
class Decision:
    """The clinician's decision on one plan line (an item, an alert or the level of care)."""

    code: str
    status: DecisionStatus
    reason: str
    by: str
    at: datetime
    text: str | None = None
    """New wording (modified), replacing the suggestion's text."""
    dose: str | None = None
    """New dose or induction method (modified), e.g. "4 mg sublingual, then 4 mg after 1 h"."""
    kind: str | None = None
    """A changed kind (recommend, consider, caution, avoid) from an older override, if any."""
    carried: bool = False
    """Copied from the previous version because the item's basis did not change."""
    at_signing: bool = False
    """No explicit decision: accepted as suggested when the plan was signed."""


@dataclass(frozen=True)
class ReviewFlag:
    """A decision on the previous version that was NOT carried over: look at the line again."""

    code: str
    previous: str
    """The earlier decision in words ("Declined: patient on methadone elsewhere")."""
    why: Literal["basis_changed", "no_longer_in_plan"]


@dataclass(frozen=True)
class Change:
    """One difference from the previous version (added, removed or changed line, intake field)."""

    what: Literal["added", "removed", "changed", "decision", "intake"]
    code: str
    text: str


@dataclass(frozen=True)
class Signature:
    signer: str
    """The signing account (email)."""
    name: str
    credentials: str
    signed_at: datetime
    content_sha256: str
    """Hash of the signed content: the plan, the decisions and the version (``api/decisions.py``)."""

    @property
    def line(self) -> str:
        """The full statement: who (with the signing account), when."""
        return f"Signed by {self._who} ({self.signer}) on {self._when}"

    @property
    def short_line(self) -> str:
        """For page headers: who and when."""
        return f"Signed by {self._who} on {self._when}"

    @property
    def _who(self) -> str:
        return f"{self.name}, {self.credentials}" if self.credentials else self.name

    @property
    def _when(self) -> str:
        return f"{self.signed_at.strftime('%Y-%m-%d %H:%M')} UTC"


@dataclass(frozen=True)
class Comment:
    author: str
    role: str
    at: datetime
    text: str
    code: str | None = None


@dataclass(frozen=True)
class Recorded:
    """One stored plan version with what the clinician decided about it."""

    plan_id: str
    version: int
    author: str
    created_at: datetime
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    not_applicable: Mapping[str, Decision] = field(default_factory=dict)
    """Missing-information fields the clinician marked "not applicable" (by field path)."""
    signature: Signature | None = None
    flags: tuple[ReviewFlag, ...] = ()
    changes: tuple[Change, ...] = ()
    previous_version: int | None = None
    comments: tuple[Comment, ...] = ()

    @property
    def status(self) -> Literal["draft", "signed"]:
        return "signed" if self.signature is not None else "draft"

    @property
    def signed(self) -> bool:
        return self.signature is not None

    def decision(self, code: str) -> Decision | None:
        """The decision of record for ``code``; on a signed plan an undecided line is accepted."""
        found = self.decisions.get(code)
        if found is not None or self.signature is None:
            return found
        sig = self.signature
        return Decision(code, "accepted", "", sig.signer, sig.signed_at, at_signing=True)
