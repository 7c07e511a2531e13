"""Clients of the SFAPI stand-in: key pairs as NERSC's Iris hands them out, and the token endpoint's checks.

NERSC's token endpoint (``https://oidc.nersc.gov/c2id/token``) implements OAuth client credentials with
``private_key_jwt`` client authentication: the client signs a short JWT with its RSA private key (authlib's
``PrivateKeyJWT``, RS256; claims ``iss = sub = client_id``, ``aud`` = the token URL, ``exp``, ``iat``, ``jti``) and
posts it as ``client_assertion``. ``verify_client_assertion`` checks exactly that against the public key registered
for the client, so a wrong key, another client's key, an expired or replayed assertion, or one made for another
token URL is refused with ``invalid_client`` (HTTP 401), as the real one refuses it.

``make_client_credentials()`` creates a client: a 13-character client id (sfapi-client checks the length when it
reads a key file) and an RSA key, usable as ``AsyncClient(creds.client_id, creds.secret, ...)`` where ``secret``
is the private key as PEM text, or written with ``write_key_file`` as the ``{"client_id", "secret": <JWK>}`` JSON
file sfapi-client reads with ``AsyncClient(key=path)`` (mode 0600, which sfapi-client insists on). Iris's other
download, a ``.pem`` file whose first line is the client id, does not load with authlib 1.9/joserfc (it reads the
whole file as the key), so no helper writes that form.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ID_LENGTH = 13
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}
# Clock skew allowed between the client and the stand-in, in seconds.
LEEWAY = 60.0


class InvalidClient(Exception):
    """The client assertion does not authenticate a registered client (OAuth ``invalid_client``)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def new_client_id() -> str:
    """A client id shaped like Iris's: 13 lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(CLIENT_ID_LENGTH))


@dataclass(frozen=True)
class ClientCredentials:
    """A client id with its RSA key pair (PEM text); ``secret`` is what sfapi-client takes as ``secret``."""

    client_id: str
    private_key_pem: str
    public_key_pem: str

    @property
    def jwk(self) -> dict[str, str]:
        """The private key as a JSON Web Key (RFC 7517/7518), as Iris offers it for download."""
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the client key is not an RSA key")
        numbers = key.private_numbers()
        public = numbers.public_numbers
        return {
            "kty": "RSA",
            "n": _int_b64(public.n),
            "e": _int_b64(public.e),
            "d": _int_b64(numbers.d),
            "p": _int_b64(numbers.p),
            "q": _int_b64(numbers.q),
            "dp": _int_b64(numbers.dmp1),
            "dq": _int_b64(numbers.dmq1),
            "qi": _int_b64(numbers.iqmp),
        }

    @property
    def secret(self) -> str:
        """The private key as PEM text: ``AsyncClient(client_id, secret)`` signs its assertions with it.

        (authlib 1.9 / joserfc import a PEM string or a JWK *dict*, not a JWK JSON string; see ``jwk``.)
        """
        return self.private_key_pem

    @property
    def jwk_json(self) -> str:
        return json.dumps(self.jwk)

    def public_key(self) -> rsa.RSAPublicKey:
        return load_public_key(self.public_key_pem)

    def write_key_file(self, path: Path | str) -> Path:
        """Write ``{"client_id": ..., "secret": <JWK>}`` (mode 0600) for ``AsyncClient(key=path)``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600)
        target.chmod(0o600)
        target.write_text(json.dumps({"client_id": self.client_id, "secret": self.jwk}))
        return target


def make_client_credentials(client_id: str | None = None, *, key_size: int = 2048) -> ClientCredentials:
    """A new client: its id (random unless given) and a fresh RSA key pair."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ClientCredentials(client_id or new_client_id(), private_pem, public_pem)


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("a client key must be an RSA public key")
    return key


def _decode_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except ValueError:
        raise InvalidClient(f"the client assertion's {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidClient(f"the client assertion's {what} is not a JSON object")
    return value


class AssertionVerifier:
    """Verifies ``private_key_jwt`` client assertions for a set of clients, remembering used ``jti`` values."""

    def __init__(self, clients: Mapping[str, rsa.RSAPublicKey], audiences: Iterable[str] = ()) -> None:
        self._clients = dict(clients)
        self.audiences = set(audiences)
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def add_client(self, client_id: str, public_key: rsa.RSAPublicKey) -> None:
        with self._lock:
            self._clients[client_id] = public_key

    def remove_client(self, client_id: str) -> None:
        with self._lock:
            self._clients.pop(client_id, None)

    def verify(self, assertion: str, *, audiences: Iterable[str] = (), client_id: str | None = None) -> str:
        """The client id the assertion authenticates; ``InvalidClient`` when it does not."""
        parts = assertion.split(".")
        if len(parts) != 3:
            raise InvalidClient("the client assertion is not a signed JWT")
        header = _decode_segment(parts[0], "header")
        claims = _decode_segment(parts[1], "payload")
        algorithm = header.get("alg")
        if algorithm not in _HASHES:
            raise InvalidClient(f"unsupported client assertion algorithm {algorithm!r}")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or claims.get("sub") != issuer:
            raise InvalidClient("the client assertion's iss and sub must both be the client id")
        if client_id is not None and client_id != issuer:
            raise InvalidClient("client_id does not match the client assertion")
        with self._lock:
            key = self._clients.get(issuer)
        if key is None:
            raise InvalidClient(f"unknown client {issuer!r}")
        try:
            signature = _b64url_decode(parts[2])
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), _HASHES[algorithm]())
        except (InvalidSignature, ValueError):
            raise InvalidClient("the client assertion's signature does not verify with the client's key") from None
        audience = claims.get("aud")
        given = {audience} if isinstance(audience, str) else set(audience) if isinstance(audience, list) else set()
        expected = self.audiences | set(audiences)
        if expected and not given & expected:
            raise InvalidClient(f"the client assertion is for {audience!r}, not this token endpoint")
        now = time.time()
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or expires < now - LEEWAY:
            raise InvalidClient("the client assertion has expired")
        issued = claims.get("iat")
        if isinstance(issued, int | float) and issued > now + LEEWAY:
            raise InvalidClient("the client assertion is issued in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClient("the client assertion has no jti")
        with self._lock:
            self._used = {key_id: until for key_id, until in self._used.items() if until >= now - LEEWAY}
            if jti in self._used:
                raise InvalidClient("the client assertion was used before (replayed jti)")
            self._used[jti] = float(expires)
        return issuer
