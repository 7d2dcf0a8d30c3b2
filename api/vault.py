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
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carepath.api.db import Database, Tx
from carepath.api.keys import DataKeys
from carepath.api.records import NewOverride, NewPlan, OverrideRecord, PlanRecord

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
        super().insert_plan(sealed)  # raises UniqueViolation before anything else is written
        self.add_content_key(new.id, kek_id, wrapped)
        self._deks[new.id] = dek
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
            dek = self._dek(owner)
            if dek is None:
                dek = self.vault.new_dek()
                self.add_content_key(owner, *self.vault.wrap(dek, owner))
                self._deks[owner] = dek
            sealed = self.vault.seal(dek, secret, f"{owner}|totp_secret")
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
