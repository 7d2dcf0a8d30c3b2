"""Key material kept OUTSIDE the database: the audit key and the data (encryption) keys.

Each comes from a setting (``CAREPATH_AUDIT_KEY``, ``CAREPATH_DATA_KEYS``: a secret store or
the service manager's environment) or, by default, from a file in the data directory that is
generated once with mode 0600 (``audit.key``, ``data.key``). A database dump, a replica or a
database administrator sees neither. For production keep them on another volume or in a
secret store (docs/security.md).

Derived keys (HKDF-SHA256, one purpose each, so no key is ever used for two things):

    audit secret -> chain key (HMAC of each audit row)
                 -> content key (HMAC of stored plans and overrides, written into the chain)
                 -> checkpoint signing key (Ed25519 seed)
                 -> patient index key (keyed hash of patient.id, so consents and disclosures
                    are found without storing the identifier; stable across data-key rotation)
    data keys    -> used as they are (AES-256-GCM key-encryption keys, api.vault)
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carepath.api.settings import Settings

__all__ = [
    "KeyError_",
    "AuditKeys",
    "DataKeys",
    "key_file",
    "audit_keys",
    "data_keys",
    "new_data_key_line",
]

AUDIT_KEY_FILE = "audit.key"
DATA_KEY_FILE = "data.key"


class KeyError_(RuntimeError):  # noqa: N801 - KeyError is a builtin with another meaning
    """A key is missing, malformed or does not fit (message names the setting, never the key)."""


def key_file(path: Path, make: bytes) -> bytes:
    """The file's content; if absent, ``make`` is written aside (0600) and linked into place,
    so two processes starting together agree on the first one linked. Never half-written."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, make)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def _derive(secret: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret)


@dataclass(frozen=True)
class AuditKeys:
    chain: bytes
    content: bytes
    signing: Ed25519PrivateKey
    patient_index: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> AuditKeys:
        if len(secret) < 32:
            raise KeyError_("the audit key is too short (at least 32 bytes; 64 hex characters)")
        seed = _derive(secret, "carepath audit checkpoint ed25519")
        return cls(
            chain=_derive(secret, "carepath audit chain hmac"),
            content=_derive(secret, "carepath audit content hmac"),
            signing=Ed25519PrivateKey.from_private_bytes(seed),
            patient_index=_derive(secret, "carepath patient index hmac"),
        )

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    def key_id(self) -> str:
        """A short fingerprint of the checkpoint key (printed in every checkpoint line)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return binascii.hexlify(raw).decode()[:16]


def audit_keys(settings: Settings) -> AuditKeys:
    if settings.audit_key is not None and settings.audit_key.get_secret_value():
        secret = settings.audit_key.get_secret_value().encode()
    else:
        secret = key_file(settings.data_dir / AUDIT_KEY_FILE, secrets.token_hex(32).encode())
    return AuditKeys.from_secret(secret)


@dataclass(frozen=True)
class DataKeys:
    """Key-encryption keys by id; ``primary`` wraps new data keys, all of them unwrap."""

    keys: dict[str, bytes]
    primary: str

    @classmethod
    def parse(cls, text: str, where: str) -> DataKeys:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in text.replace("\n", ",").split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, b64 = part.partition(":")
            try:
                raw = base64.b64decode(b64, validate=True) if sep else b""
            except binascii.Error:
                raw = b""
            if not kid or not kid.isalnum() or len(kid) > 32 or len(raw) != 32:
                raise KeyError_(f"{where}: each key must be 'id:base64 of 32 bytes' (id: letters and digits)")
            if kid in keys:
                raise KeyError_(f"{where}: key id {kid} appears twice")
            keys[kid] = raw
            order.append(kid)
        if not order:
            raise KeyError_(f"{where}: no key")
        return cls(keys, order[0])


def new_data_key_line(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def data_keys(settings: Settings) -> DataKeys:
    if settings.data_keys is not None and settings.data_keys.get_secret_value():
        return DataKeys.parse(settings.data_keys.get_secret_value(), "CAREPATH_DATA_KEYS")
    path = settings.data_dir / DATA_KEY_FILE
    text = key_file(path, new_data_key_line("k1").encode()).decode()
    return DataKeys.parse(text, str(path))
