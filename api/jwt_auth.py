"""Authentication of the calling EHR by its signed JWT (CDS Hooks 2.0, "Trusting CDS Clients").

The ONLY importer of PyJWT. ``verify_client_jwt`` checks, in this order, and refuses with a
reason that names the check (never the token or its claims):

1. the header: an asymmetric ``alg`` the client is configured for (never ``none``, never HMAC),
   a ``kid``; a ``jku`` only if it equals the issuer's configured JWK Set URL;
2. ``iss`` is on the allow-list (``Settings.cds_clients``);
3. the signature, with the issuer's key: configured inline, or fetched from ITS configured JWK
   Set URL (nothing else is ever fetched; cached, refreshed once for an unknown ``kid``);
4. ``aud`` is the URL of the endpoint being called; ``exp``, ``iat`` and ``jti`` are present;
   not expired, not issued in the future, and living at most ``MAX_LIFETIME`` from now (a
   replay window the ``jti`` check can hold);
5. ``jti`` has not been seen from this issuer before (``seen`` is the database's replay guard).

Time is an input (``now``): the service passes its clock, tests a fixed one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from carepath.api.settings import ASYMMETRIC_ALGORITHMS, CdsClient

__all__ = [
    "JwtRejected",
    "ClientIdentity",
    "JwksCache",
    "verify_client_jwt",
    "looks_like_jwt",
    "MAX_LIFETIME",
    "LEEWAY",
]

MAX_LIFETIME = timedelta(minutes=5)
"""CDS Hooks JWTs are per call: one living longer than this from now is refused."""
LEEWAY = timedelta(seconds=30)
"""Clock skew tolerated between the EHR and this service."""
JWKS_TTL_S = 300.0
JWKS_MAX_BYTES = 256 * 1024
JWKS_TIMEOUT_S = 5.0


class JwtRejected(Exception):
    """The JWT does not authenticate a trusted EHR. ``str(exc)`` is safe to return (no claims)."""


@dataclass(frozen=True)
class ClientIdentity:
    issuer: str
    organisation: str
    jti: str
    tenant: str | None = None


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (three base64url parts, header starting '{"'), not a carepath API token."""
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ") and all(parts)


class JwksCache:
    """JWK Sets by URL, fetched with httpx (no redirects, size and time limits), cached JWKS_TTL_S."""

    def __init__(self, fetch: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self._fetch = fetch or _fetch_jwks
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, PyJWKSet]] = {}

    def get(self, url: str, *, refresh: bool = False) -> PyJWKSet:
        with self._lock:
            hit = self._cache.get(url)
            if hit and not refresh and time.monotonic() - hit[0] < JWKS_TTL_S:
                return hit[1]
        try:
            keys = PyJWKSet.from_dict(dict(self._fetch(url)))
        except JwtRejected:
            raise
        except Exception:
            raise JwtRejected("the issuer's JWK Set could not be read") from None
        with self._lock:
            self._cache[url] = (time.monotonic(), keys)
        return keys


def _fetch_jwks(url: str) -> Mapping[str, Any]:
    try:
        with (
            httpx.Client(timeout=JWKS_TIMEOUT_S, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise JwtRejected("the issuer's JWK Set URL did not answer 200")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise JwtRejected("the issuer's JWK Set is too large")
    except httpx.HTTPError:
        raise JwtRejected("the issuer's JWK Set URL could not be reached") from None
    data = json.loads(body)
    if not isinstance(data, Mapping):
        raise JwtRejected("the issuer's JWK Set is not a JSON object")
    return data


def _client_for(issuer: Any, clients: Iterable[CdsClient]) -> CdsClient:
    for client in clients:
        if isinstance(issuer, str) and issuer == client.issuer:
            return client
    raise JwtRejected("the JWT issuer is not a trusted CDS client of this service")


def _key(client: CdsClient, kid: str, jwks: JwksCache) -> PyJWK:
    if client.jwks is not None:
        try:
            keyset = PyJWKSet.from_dict(dict(client.jwks))
        except Exception:
            raise JwtRejected("the issuer's configured JWK Set is not valid") from None
        return _find(keyset, kid)
    if not client.jwks_url:
        raise JwtRejected("no key is configured for this issuer")
    try:
        return _find(jwks.get(client.jwks_url), kid)
    except JwtRejected:
        return _find(jwks.get(client.jwks_url, refresh=True), kid)  # the EHR may have rotated keys


def _find(keyset: PyJWKSet, kid: str) -> PyJWK:
    for key in keyset.keys:
        if key.key_id == kid:
            return key
    raise JwtRejected("no key with the JWT's kid in the issuer's JWK Set")


def _header(token: str, client_algs: Iterable[str] | None = None) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtRejected("the bearer token is not a well-formed JWT") from None
    alg = str(header.get("alg"))
    if alg not in ASYMMETRIC_ALGORITHMS or (client_algs is not None and alg not in client_algs):
        raise JwtRejected("the JWT alg is not an accepted asymmetric algorithm")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise JwtRejected("the JWT header has no kid")
    return header


def _claims_unverified(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        raise JwtRejected("the bearer token is not a well-formed JWT") from None


def _at(claims: Mapping[str, Any], name: str) -> datetime:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise JwtRejected(f"the JWT has no numeric {name}")
    return datetime.fromtimestamp(value, tz=UTC)


def _check_times(claims: Mapping[str, Any], now: datetime) -> datetime:
    exp, iat = _at(claims, "exp"), _at(claims, "iat")
    if exp <= now - LEEWAY:
        raise JwtRejected("the JWT has expired")
    if iat > now + LEEWAY:
        raise JwtRejected("the JWT was issued in the future")
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise JwtRejected("the JWT lives too long (at most 5 minutes)")
    if "nbf" in claims and _at(claims, "nbf") > now + LEEWAY:
        raise JwtRejected("the JWT is not valid yet")
    return exp


def verify_client_jwt(
    token: str,
    *,
    clients: Iterable[CdsClient],
    audience: Iterable[str],
    now: datetime,
    jwks: JwksCache,
    seen: Callable[[str, str, datetime], bool],
) -> ClientIdentity:
    """The identity of the trusted EHR that signed ``token`` for one of ``audience``, or JwtRejected.

    ``seen(issuer, jti, expires_at)`` records the JWT id and returns False if it was used before.
    """
    clients = tuple(clients)
    _header(token)
    claims = _claims_unverified(token)
    client = _client_for(claims.get("iss"), clients)
    header = _header(token, client.algorithms)
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise JwtRejected("the JWT jku is not this issuer's configured JWK Set URL")
    key = _key(client, header["kid"], jwks)
    try:
        verified = jwt.decode(
            token,
            key=key,
            algorithms=[header["alg"]],
            audience=list(audience),
            issuer=client.issuer,
            options={
                "require": ["iss", "aud", "exp", "iat", "jti"],
                "verify_exp": False,  # checked below against the service's clock
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise JwtRejected("the JWT aud is not the URL of this CDS endpoint") from None
    except jwt.MissingRequiredClaimError as exc:
        raise JwtRejected(f"the JWT has no {exc.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise JwtRejected("the JWT signature does not verify with the issuer's key") from None
    except jwt.PyJWTError:
        raise JwtRejected("the JWT could not be verified") from None
    exp = _check_times(verified, now)
    jti = verified.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 200:
        raise JwtRejected("the JWT jti must be a string of 1 to 200 characters")
    if not seen(client.issuer, jti, exp):
        raise JwtRejected("the JWT was already used (jti replayed)")
    tenant = verified.get("tenant")
    return ClientIdentity(
        client.issuer, client.organisation, jti, tenant if isinstance(tenant, str) else None
    )
