"""Where to get help, by jurisdiction: a reviewed constant like the legal notice.

Names and notes are English msgids, translated through the catalogue. Numbers are dialled
as printed. Re-check every number before ``HELPLINES_REVIEWED_ON`` is a year old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["HELPLINES", "HELPLINES_REVIEWED_ON", "Helpline", "helplines_for"]

HELPLINES_REVIEWED_ON = date(2026, 11, 24)


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it here."""
    return message


@dataclass(frozen=True)
class Helpline:
    name: str
    number: str
    note: str
    languages: tuple[str, ...] = ()  # shown only for these languages; empty = always


_EMERGENCY_NOTE = N_("If someone will not wake up or is not breathing.")

HELPLINES: dict[str, tuple[Helpline, ...]] = {
    "US": (
        Helpline(N_("Emergency"), "911", _EMERGENCY_NOTE),
        Helpline(N_("988 Suicide and Crisis Lifeline"), "988", N_("Call or text. Open day and night.")),
        Helpline(N_("988 in Spanish"), "988", N_("Call and press 2."), ("es",)),
        Helpline(
            N_("SAMHSA National Helpline"),
            "1-800-662-4357",
            N_("Free help to find treatment. Open day and night. English and Spanish."),
        ),
    ),
    "CA": (
        Helpline(N_("Emergency"), "911", _EMERGENCY_NOTE),
        Helpline(N_("9-8-8 Suicide Crisis Helpline"), "988", N_("Call or text. Open day and night.")),
        Helpline(
            N_("National Overdose Response Service"),
            "1-888-688-6677",
            N_("Someone stays on the phone while you use, and sends help if you stop answering."),
        ),
    ),
    "UK": (
        Helpline(N_("Emergency"), "999", _EMERGENCY_NOTE),
        Helpline(N_("Samaritans"), "116 123", N_("Free. Open day and night.")),
        Helpline(N_("FRANK drugs helpline"), "0300 123 6600", N_("Free advice about drugs.")),
        Helpline(N_("NHS 111"), "111", N_("Urgent health advice.")),
    ),
    "DE": (
        Helpline(N_("Emergency"), "112", _EMERGENCY_NOTE),
        Helpline(N_("TelefonSeelsorge"), "0800 111 0 111", N_("Free. Open day and night.")),
        Helpline(N_("Sucht & Drogen Hotline"), "01806 313031", N_("Help with drugs. Open day and night.")),
    ),
}


def helplines_for(jurisdiction: str, language: str) -> list[Helpline]:
    lines = HELPLINES.get(jurisdiction, HELPLINES["US"])
    return [h for h in lines if not h.languages or language in h.languages]
