"""Encryption at rest of what a patient told us: stored intakes, plans, override texts, and
TOTP secrets. Application-level, so a database file, dump, replica or administrator sees
ciphertext only.

Envelope encryption (the usual shape, e.g. cloud KMS "data keys"):

- every plan gets its own random 256-bit data key (DEK); its intake, its plan and the texts of
  its overrides are sealed with AES-256-GCM under that DEK, with the plan id and the column
  as associated data (a sealed value moved to another row or column does not open);
- the DEK is stored wrapped (AES-256-GCM) by a key-encryption key (KEK) from the settings or
  ``data_dir/data.key`` (api.keys), in ``content_keys`` with the KEK's id;
- rotation (docs/security.md): put a new KEK first in ``CAREPATH_DATA_KEYS`` (old ones after
  it), run ``carepath keys rotate`` (re-wraps every DEK under the new KEK; plans are not
  rewritten, and they are append-only anyway), then drop the old KEK.

Sealed text is ``cp1:`` + base64(nonce || ciphertext || tag). Rows written before encryption
was introduced carry no ``content_keys`` row and are read as they are (the audit chain still
covers them). Nothing here logs or raises with a value: errors name the plan id at most.

``SealedTx`` is the repository (api.db.Tx) with sealing on the way in and opening on the way
out, so every caller (routes, web form, FHIR, CDS, batch) keeps reading plain records.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carepath.api.db import Database, Tx
from carepath.api.keys import DataKeys
from carepath.api.records import (
    CommentRecord,
    NewComment,
    NewOverride,
    NewPlan,
    OverrideRecord,
    PlanRecord,
    PlanSummary,
    Prefill,
)

__all__ = ["Vault", "VaultError", "SealedTx", "PREFIX", "rotate", "tx_factory", "patient_id_of"]

PREFIX = "cp1:"
_NONCE = 12


class VaultError(RuntimeError):
    """A sealed value cannot be opened (missing or wrong key, or tampered ciphertext)."""


class Vault:
    def __init__(self, keys: DataKeys, patient_index_key: bytes) -> None:
        self.keys = keys
        self._index = patient_index_key

    # data keys

    def new_dek(self) -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def wrap(self, dek: bytes, owner_id: str) -> tuple[str, str]:
        kek_id = self.keys.primary
        return kek_id, self._encrypt(self.keys.keys[kek_id], dek, f"dek|{owner_id}")

    def unwrap(self, kek_id: str, wrapped: str, owner_id: str) -> bytes:
        kek = self.keys.keys.get(kek_id)
        if kek is None:
            raise VaultError(f"data key {kek_id} of {owner_id} is not configured (CAREPATH_DATA_KEYS)")
        return self._decrypt(kek, wrapped, f"dek|{owner_id}", owner_id)

    # values

    def seal(self, dek: bytes, text: str, aad: str) -> str:
        return PREFIX + self._encrypt(dek, text.encode(), aad)

    def open(self, dek: bytes | None, stored: str, aad: str, owner_id: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption at rest
        if dek is None:
            raise VaultError(f"{owner_id} is sealed but has no data key")
        return self._decrypt(dek, stored[len(PREFIX) :], aad, owner_id).decode()

    def patient_key(self, org_id: int, patient_id: str) -> str:
        """A keyed hash of the organisation's patient identifier (never stored in clear)."""
        msg = f"{org_id}\n{patient_id.strip()}".encode()
        return hmac.new(self._index, msg, hashlib.sha256).hexdigest()

    def search_token(self, org_id: int, word: str) -> str:
        """A keyed hash of one word of a patient's name or MRN, for the worklist search."""
        msg = f"{org_id}\nsearch\n{word.casefold()}".encode()
        return hmac.new(self._index, msg, hashlib.sha256).hexdigest()[:24]

    def search_tokens(self, org_id: int, *texts: str | None) -> list[str]:
        """Each whitespace-separated word and each whole text (an MRN with spaces), hashed."""
        words = {w for t in texts if t for w in (*t.split(), " ".join(t.split())) if w}
        return sorted(self.search_token(org_id, w) for w in words)

    @staticmethod
    def _encrypt(key: bytes, data: bytes, aad: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, aad.encode())).decode()

    @staticmethod
    def _decrypt(key: bytes, text: str, aad: str, owner_id: str) -> bytes:
        try:
            raw = base64.b64decode(text, validate=True)
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad.encode())
        except (InvalidTag, ValueError):
            raise VaultError(f"a sealed value of {owner_id} does not open (wrong key or altered)") from None


def patient_id_of(intake_json: str) -> str | None:
    try:
        patient = json.loads(intake_json).get("patient") or {}
    except (ValueError, AttributeError):
        return None
    value = patient.get("id") if isinstance(patient, dict) else None
    return value if isinstance(value, str) and value.strip() else None


class SealedTx(Tx):
    """api.db.Tx that seals patient content on insert and opens it on read."""

    vault: Vault  # set by tx_factory()

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self._deks: dict[str, bytes | None] = {}

    # plans

    def insert_plan(self, new: NewPlan) -> None:
        dek = self.vault.new_dek()
        kek_id, wrapped = self.vault.wrap(dek, new.id)
        sealed = dataclasses.replace(
            new,
            intake_json=self.vault.seal(dek, new.intake_json, f"{new.id}|intake_json"),
            plan_json=self.vault.seal(dek, new.plan_json, f"{new.id}|plan_json"),
        )
        self._deks[new.id] = dek  # the patient index row (_patient_index) is sealed with it
        try:
            super().insert_plan(sealed)  # raises UniqueViolation before anything else is written
        except Exception:
            self._deks.pop(new.id, None)  # the stored plan of that id has its own key
            raise
        self.add_content_key(new.id, kek_id, wrapped)
        patient_id = patient_id_of(new.intake_json)
        if patient_id is not None:
            self.add_plan_subject(new.id, new.org_id, self.vault.patient_key(new.org_id, patient_id))

    def _plan(self, row: Any) -> PlanRecord:  # type: ignore[override]
        record: PlanRecord = Tx._plan(row)
        dek = self._dek(record.id)
        return dataclasses.replace(
            record,
            intake_json=self.vault.open(dek, record.intake_json, f"{record.id}|intake_json", record.id),
            plan_json=self.vault.open(dek, record.plan_json, f"{record.id}|plan_json", record.id),
        )

    # the worklist's patient index: name and MRN sealed, searched by keyed hashes of their words

    def _patient_index(self, new: NewPlan) -> dict[str, Any]:
        dek = self._deks[new.id]

        def seal(value: str | None, name: str) -> str | None:
            return None if value is None else self.vault.seal(dek, value, f"{new.id}|{name}")

        tokens = self.vault.search_tokens(new.org_id, new.patient_name, new.patient_ref)
        return {
            "patient_ref": seal(new.patient_ref, "patient_ref"),
            "patient_name": seal(new.patient_name, "patient_name"),
            "search_text": f" {' '.join(tokens)} " if tokens else "",
        }

    def _patient_terms(self, org_id: int, text: str) -> list[str]:
        # every word must be a whole word of the name or the MRN (no substring search on sealed data)
        tokens = self.vault.search_tokens(org_id, *text.split()) or [self.vault.search_token(org_id, "")]
        return [f" {t} " for t in tokens]

    def list_plans(
        self, org_id: int, flt: Any, limit: int, cursor: str | None = None
    ) -> tuple[list[PlanSummary], str | None]:
        items, nxt = super().list_plans(org_id, flt, limit, cursor)
        return [self._open_patient(i) for i in items], nxt

    def _open_patient(self, item: PlanSummary) -> PlanSummary:
        dek = self._dek(item.id)

        def open_(value: str | None, name: str) -> str | None:
            return None if value is None else self.vault.open(dek, value, f"{item.id}|{name}", item.id)

        return dataclasses.replace(
            item,
            patient_ref=open_(item.patient_ref, "patient_ref"),
            patient_name=open_(item.patient_name, "patient_name"),
        )

    # review comments (free text about the patient's plan)

    def insert_comment(self, new: NewComment) -> int:
        dek = self._dek(new.plan_id)
        if dek is None:  # a plan stored before encryption
            return super().insert_comment(new)
        text = self.vault.seal(dek, new.text, f"{new.plan_id}|comment")
        return super().insert_comment(dataclasses.replace(new, text=text))

    def comments_of(self, plan_id: str) -> list[CommentRecord]:
        dek = self._dek(plan_id)
        return [
            dataclasses.replace(c, text=self.vault.open(dek, c.text, f"{plan_id}|comment", plan_id))
            for c in super().comments_of(plan_id)
        ]

    # CDS Hooks form prefills (what was read from the chart), one data key per organisation

    def insert_prefill(self, token_sha256: str, prefill: Prefill, now: datetime) -> None:
        dek = self._dek_or_new(f"prefills:{prefill.org_id}")
        sealed = dataclasses.replace(
            prefill,
            intake_json=self.vault.seal(dek, prefill.intake_json, f"{token_sha256}|intake_json"),
            readings_json=self.vault.seal(dek, prefill.readings_json, f"{token_sha256}|readings_json"),
        )
        super().insert_prefill(token_sha256, sealed, now)

    def prefill(self, token_sha256: str, org_id: int, now: datetime) -> Prefill | None:
        found = super().prefill(token_sha256, org_id, now)
        if found is None:
            return None
        owner = f"prefills:{org_id}"
        dek = self._dek(owner)
        return dataclasses.replace(
            found,
            intake_json=self.vault.open(dek, found.intake_json, f"{token_sha256}|intake_json", owner),
            readings_json=self.vault.open(dek, found.readings_json, f"{token_sha256}|readings_json", owner),
        )

    def _dek_or_new(self, owner_id: str) -> bytes:
        """The owner's data key, made and stored (wrapped) the first time it is needed."""
        dek = self._dek(owner_id)
        if dek is None:
            dek = self.vault.new_dek()
            self.add_content_key(owner_id, *self.vault.wrap(dek, owner_id))
            self._deks[owner_id] = dek
        return dek

    def _dek(self, owner_id: str) -> bytes | None:
        if owner_id not in self._deks:
            found = self.content_key(owner_id)
            self._deks[owner_id] = self.vault.unwrap(*found, owner_id) if found else None
        return self._deks[owner_id]

    # overrides (their free text may describe the patient)

    def insert_override(self, new: NewOverride) -> OverrideRecord:
        dek = self._dek(new.plan_id)
        if dek is None:  # a plan stored before encryption: its overrides stay as it is
            return super().insert_override(new)
        sealed = dataclasses.replace(
            new,
            reason=self.vault.seal(dek, new.reason, f"{new.plan_id}|override.reason"),
            replacement_text=None
            if new.replacement_text is None
            else self.vault.seal(dek, new.replacement_text, f"{new.plan_id}|override.replacement_text"),
        )
        stored = super().insert_override(sealed)
        return dataclasses.replace(stored, reason=new.reason, replacement_text=new.replacement_text)

    def overrides_of(self, plan_id: str) -> list[OverrideRecord]:
        dek = self._dek(plan_id)
        out = []
        for o in super().overrides_of(plan_id):
            reason = self.vault.open(dek, o.reason, f"{plan_id}|override.reason", plan_id)
            text = o.replacement_text
            if text is not None:
                text = self.vault.open(dek, text, f"{plan_id}|override.replacement_text", plan_id)
            out.append(dataclasses.replace(o, reason=reason, replacement_text=text))
        return out

    # TOTP secrets

    def set_totp(self, user_id: int, secret: str | None, enabled: bool, last_step: int | None = None) -> None:
        owner = f"user:{user_id}"
        sealed = None
        if secret is not None:
            sealed = self.vault.seal(self._dek_or_new(owner), secret, f"{owner}|totp_secret")
        super().set_totp(user_id, sealed, enabled, last_step)

    def totp_of(self, user_id: int) -> tuple[str | None, bool, int | None]:
        secret, enabled, step = super().totp_of(user_id)
        owner = f"user:{user_id}"
        if secret is not None:
            secret = self.vault.open(self._dek(owner), secret, f"{owner}|totp_secret", owner)
        return secret, enabled, step


def tx_factory(vault: Vault) -> Callable[[Any], Tx]:
    bound = type("BoundSealedTx", (SealedTx,), {"vault": vault})
    return bound  # type: ignore[return-value]


def rotate(db: Database, vault: Vault, batch: int = 500) -> int:
    """Re-wrap every data key not under the primary KEK (``carepath keys rotate``)."""
    done = 0
    while True:
        with db.transaction() as tx:
            todo = tx.content_keys_not_under(vault.keys.primary, batch)
            for owner_id, kek_id, wrapped in todo:
                dek = vault.unwrap(kek_id, wrapped, owner_id)
                tx.rewrap_content_key(owner_id, *vault.wrap(dek, owner_id))
        done += len(todo)
        if len(todo) < batch:
            return done
