"""Reviewed legal text printed on every page of the clinician draft.

Change the wording only after a compliance review, and then update ``PART2_REVIEWED_ON``.
A test pins the text so that an accidental edit shows up as a failing diff.
"""

from __future__ import annotations

from datetime import date

__all__ = ["PART2_CITATION", "PART2_NOTICE", "PART2_REVIEWED_ON", "PART2_SOURCE"]

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
