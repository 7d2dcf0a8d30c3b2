"""Reviewed legal text: the confidentiality notice of the clinician draft, by jurisdiction.

Change the wording only after a compliance review, and then update ``PART2_REVIEWED_ON``.
A test pins the text so that an accidental edit shows up as a failing diff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = [
    "CONFIDENTIALITY",
    "Confidentiality",
    "PART2_CITATION",
    "PART2_NOTICE",
    "PART2_REVIEWED_ON",
    "PART2_SOURCE",
    "confidentiality",
]

PART2_CITATION = "42 CFR 2.32(a)(1)"
PART2_SOURCE = (
    "42 CFR part 2, Confidentiality of Substance Use Disorder Patient Records, final rule "
    "89 FR 12472 (16 Feb 2024; compliance date 16 Feb 2026), section 2.32(a)(1), statement 1"
)
PART2_REVIEWED_ON = date(2026, 11, 24)

# Statement 1 of 42 CFR 2.32(a)(1) as amended by the 2024 final rule. "Federal" is
# capitalised as in the regulation text.
PART2_NOTICE = (
    "This record which has been disclosed to you is protected by Federal confidentiality rules "
    "(42 CFR part 2). These rules prohibit you from using or disclosing this record, or testimony "
    "that describes the information contained in this record, in any civil, criminal, "
    "administrative, or legislative proceedings by any Federal, State, or local authority, against "
    "the patient, unless authorized by the consent of the patient, except as provided at 42 CFR "
    "2.12(c)(5) or as authorized by a court in accordance with 42 CFR 2.64 or 2.65. In addition, "
    "the Federal rules prohibit you from making any other use or disclosure of this record unless "
    "at least one of the following applies: (i) Further use or disclosure is expressly permitted "
    "by the written consent of the individual whose information is being disclosed in this record "
    "or as otherwise permitted by 42 CFR part 2. (ii) You are a covered entity or business "
    "associate and have received the record for treatment, payment, or health care operations, or "
    "(iii) You have received the record from a covered entity or business associate as permitted "
    "by 45 CFR part 164, subparts A and E. A general authorization for the release of medical or "
    "other information is NOT sufficient to meet the required elements of written consent to "
    "further use or redisclose the record (see 42 CFR 2.31)."
)


# -- by jurisdiction ------------------------------------------------------------------------------
# Every clinician document prints a SHORT notice in the footer of each page and the FULL
# statement once. The US statement is the regulation's own text (above); the UK, German and
# Canadian statements are carepath's wording of the governing rules (named in ``source``), not
# statutory text: they await the same compliance review as the US text (``confirmed=False``).


@dataclass(frozen=True)
class Confidentiality:
    jurisdiction: str
    short: str
    """One line for the footer of every page."""
    heading: str
    full: str
    source: str
    reviewed_on: date
    confirmed: bool
    """True when the text is the reviewed legal wording; False for carepath's own summary."""


CONFIDENTIALITY: dict[str, Confidentiality] = {
    "US": Confidentiality(
        jurisdiction="US",
        short="Confidential: substance use disorder record protected by 42 CFR part 2; "
        "redisclosure prohibited (full statement in this document).",
        heading=f"Confidentiality notice ({PART2_CITATION})",
        full=PART2_NOTICE,
        source=PART2_SOURCE,
        reviewed_on=PART2_REVIEWED_ON,
        confirmed=True,
    ),
    "UK": Confidentiality(
        jurisdiction="UK",
        short="Confidential: special category health data (UK GDPR Art. 9, Data Protection Act 2018); "
        "share for direct care or with consent only.",
        heading="Confidentiality (UK)",
        full="This record contains health information about a named person, which is special category "
        "data under Article 9 of the UK GDPR and the Data Protection Act 2018, and is held under the "
        "common law duty of confidentiality. Use it only for this person's direct care. Share it "
        "beyond the care team only with their consent, or where the law requires or permits it "
        "(for example a court order or a serious risk of harm), and record why.",
        source="UK GDPR Art. 9; Data Protection Act 2018 Sch. 1; common law duty of confidentiality "
        "(NHS Confidentiality: Code of Practice; GMC Confidentiality guidance 2017). carepath "
        "wording, pending compliance review.",
        reviewed_on=date(2026, 12, 2),
        confirmed=False,
    ),
    "DE": Confidentiality(
        jurisdiction="DE",
        short="Confidential (ärztliche Schweigepflicht, § 203 StGB; health data under Art. 9 GDPR): "
        "disclose only for treatment, with consent or where the law requires.",
        heading="Confidentiality (Germany)",
        full="This record is covered by medical professional secrecy (ärztliche Schweigepflicht, "
        "§ 203 StGB and § 9 MBO-Ä) and contains health data under Article 9 of the GDPR (DSGVO) "
        "and the BDSG. Disclose it only to those treating this person, with their consent, or "
        "where a law requires or permits disclosure. Unauthorised disclosure is a criminal offence.",
        source="§ 203 StGB; § 9 (Muster-)Berufsordnung für Ärzte; Art. 9 DSGVO; § 22 BDSG. carepath "
        "wording, pending compliance review.",
        reviewed_on=date(2026, 12, 2),
        confirmed=False,
    ),
    "CA": Confidentiality(
        jurisdiction="CA",
        short="Confidential: personal health information protected by provincial health privacy law; "
        "disclose only with consent or as the law permits.",
        heading="Confidentiality (Canada)",
        full="This record contains personal health information protected by the health privacy law "
        "of the province or territory where care is given (for example Ontario's Personal Health "
        "Information Protection Act, 2004, or Alberta's Health Information Act) and, where it "
        "applies, PIPEDA. Use and disclose it only for this person's care, with their consent, "
        "or as that law permits or requires.",
        source="Provincial health information acts (e.g. PHIPA 2004 (Ontario), HIA (Alberta)); PIPEDA "
        "where applicable. carepath wording, pending compliance review.",
        reviewed_on=date(2026, 12, 2),
        confirmed=False,
    ),
}


def confidentiality(jurisdiction: str) -> Confidentiality:
    """The notice for the plan's jurisdiction (US rules only in US plans); unknown ones get US."""
    return CONFIDENTIALITY.get(jurisdiction, CONFIDENTIALITY["US"])
