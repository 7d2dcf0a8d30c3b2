"""Table-driven checks of the pieces behind the limits: token buckets, the anonymous-noise
summary, JSON hygiene, the keys' parser and the sealing of values (no I/O, no server)."""

from __future__ import annotations

import base64

import pytest

from carepath.api.guard import HostileInput, check_json, check_text
from carepath.api.keys import DataKeys, KeyError_
from carepath.api.throttle import AnonymousNoise, TokenBuckets
from carepath.api.vault import Vault, VaultError


@pytest.mark.parametrize(
    ("rate", "burst", "calls", "allowed"), [(1, 1, 5, 1), (1, 3, 5, 3), (10, 20, 25, 20), (0, None, 50, 50)]
)
def test_a_bucket_allows_its_burst_then_asks_to_wait(rate, burst, calls, allowed):
    b = TokenBuckets(rate, burst)
    waits = [b.take("k", now=100.0) for _ in range(calls)]
    assert sum(1 for w in waits if w == 0) == allowed
    assert all(w > 0 for w in waits[allowed:])


def test_a_bucket_refills_with_time_and_keys_are_bounded():
    b = TokenBuckets(2, 2, max_keys=3)
    assert b.take("a", now=0) == 0 and b.take("a", now=0) == 0 and b.take("a", now=0) > 0
    assert b.take("a", now=0.5) == 0  # one token back after 0.5 s at 2/s
    for k in "bcdefg":
        b.take(k, now=1)
    assert len(b._state) == 3


def test_anonymous_noise_writes_the_first_and_summarises_the_rest():
    t = {"now": 0.0}
    noise = AnonymousNoise(60, clock=lambda: t["now"])
    first = [noise.admit("plan.read", "unauthenticated", "10.0.0.1") for _ in range(480)]
    assert first[0] is True and first.count(True) == 1
    assert noise.admit("plan.read", "unauthenticated", "10.0.0.2") is True  # another address
    assert noise.due() == []  # the window is not over
    t["now"] = 61
    due = sorted(noise.due())
    assert due == [("plan.read", "unauthenticated", "10.0.0.1", 479, 61)]
    assert noise.admit("plan.read", "unauthenticated", "10.0.0.1") is True  # a new window


def test_anonymous_noise_memory_is_bounded():
    noise = AnonymousNoise(60, max_keys=10, clock=lambda: 0.0)
    admitted = [
        noise.admit("plan.read", "unauthenticated", f"10.0.{i // 256}.{i % 256}") for i in range(1000)
    ]
    assert len(noise._counts) <= 11 and admitted.count(True) <= 11


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"a": "x\\u0000"}', "body.a"),
        (b'{"a": ["ok", "\\ud800"]}', "body.a[1]"),
        (b'{"k\\u0000": 1}', "body (a key)"),
        (b"[" * 70 + b"]" * 70, "body"),
        (b"[" * 5000 + b"]" * 5000, "body"),
        (b'{"a": {"b": {"c": "\\udfff"}}}', "body.a.b.c"),
    ],
)
def test_hostile_json_names_the_field(raw, field):
    with pytest.raises(HostileInput) as caught:
        check_json(raw, 64)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "raw", [b'{"a": "\\ud83d\\ude00"}', b'{"a": "caf\\u00e9"}', b"not json", b"[" * 60 + b"]" * 60]
)
def test_ordinary_or_non_json_input_passes(raw):
    check_json(raw, 64)


def test_check_text_refuses_nul_and_lone_surrogates_only():
    check_text("Ünïcödé 😀", "f")
    for bad in ("a\x00", "\ud800", "x\udc00y"):
        with pytest.raises(HostileInput):
            check_text(bad, "f")


def _key() -> str:
    return base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    "text", ["", "k1", "k1:short", "k 1:" + _key(), "k1:" + _key() + ",k1:" + _key(), "k1:%%%"]
)
def test_malformed_data_keys_are_refused_without_echo(text):
    with pytest.raises(KeyError_) as caught:
        DataKeys.parse(text, "CAREPATH_DATA_KEYS")
    assert _key() not in str(caught.value)


def test_sealed_values_open_only_with_their_key_and_place():
    keys = DataKeys.parse(f"k2:{_key()},k1:{base64.b64encode(b'o' * 32).decode()}", "test")
    vault = Vault(keys, b"i" * 32)
    dek = vault.new_dek()
    sealed = vault.seal(dek, "Jane Doe", "pl_x|intake_json")
    assert "Jane" not in sealed and vault.open(dek, sealed, "pl_x|intake_json", "pl_x") == "Jane Doe"
    with pytest.raises(VaultError):
        vault.open(dek, sealed, "pl_y|intake_json", "pl_y")  # moved to another row
    with pytest.raises(VaultError):
        vault.open(vault.new_dek(), sealed, "pl_x|intake_json", "pl_x")  # another key
    kek, wrapped = vault.wrap(dek, "pl_x")
    assert kek == "k2" and vault.unwrap(kek, wrapped, "pl_x") == dek
    assert vault.open(None, "legacy plain text", "a", "b") == "legacy plain text"
    assert vault.patient_key(1, "mrn-1") == vault.patient_key(1, " mrn-1 ") != vault.patient_key(2, "mrn-1")
