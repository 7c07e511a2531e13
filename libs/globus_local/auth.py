"""The Globus Auth part of the stand-in: confidential clients and the client-credentials token grant.

``POST /v2/oauth2/token`` with ``grant_type=client_credentials`` and ``scope=...``, the client authenticated with
HTTP Basic (what globus-sdk's ``ConfidentialAppAuthClient`` sends) or with ``client_id``/``client_secret`` in the
form. The answer is Globus Auth's token response: the first requested resource server's token at the top level,
the others in ``other_tokens``, each ``{"access_token", "scope", "expires_in", "token_type": "Bearer",
"resource_server"}``. globus-sdk's ``ClientApp`` checks that ``scope`` holds the scope it asked for, so the
granted scope string is the requested one (dependent scopes in brackets are accepted and left out, as Globus Auth
lists only the root scope in ``scope``).

Refusals, in Globus Auth's words: no or wrong client credentials -> 401 ``{"error": "invalid_client"}``; another
grant type -> 400 ``{"error": "unsupported_grant_type"}``; no scope or a scope this stand-in does not know ->
400 ``{"error": "invalid_scope"}``. Tokens are opaque random strings; ``expire_tokens`` forgets them all.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from beamflow.common.standin_http import Request, Response

TOKEN_PATH = "/v2/oauth2/token"
TRANSFER_RESOURCE_SERVER = "transfer.api.globus.org"
AUTH_RESOURCE_SERVER = "auth.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
# Globus Auth's access tokens live 48 hours.
DEFAULT_TOKEN_TTL = 172800.0
# The scopes this stand-in can grant, by the resource server their tokens are for.
KNOWN_SCOPES: dict[str, str] = {
    TRANSFER_SCOPE: TRANSFER_RESOURCE_SERVER,
    "openid": AUTH_RESOURCE_SERVER,
    "profile": AUTH_RESOURCE_SERVER,
    "email": AUTH_RESOURCE_SERVER,
    "urn:globus:auth:scope:auth.globus.org:view_identities": AUTH_RESOURCE_SERVER,
}


@dataclass(frozen=True)
class ClientCredentials:
    """A confidential client (a Globus "service account"): what ``ClientApp(client_id=, client_secret=)`` takes."""

    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Grant:
    """What an access token stands for."""

    client_id: str
    resource_server: str
    scope: str
    expires_at: float


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Globus Auth"'
    return Response(status, {"error": error, "error_description": description}, headers)


def root_scope(scope: str) -> str:
    """``transfer:all[<dependent>]`` -> ``transfer:all``: a token's ``scope`` lists root scopes only."""
    return scope.split("[", 1)[0].strip()


def split_scopes(text: str) -> list[str]:
    """Space-separated scopes, keeping the spaces inside dependent-scope brackets."""
    scopes: list[str] = []
    depth = 0
    current = ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char.isspace() and depth == 0:
            if current:
                scopes.append(current)
            current = ""
        else:
            current += char
    if current:
        scopes.append(current)
    return scopes


class GlobusAuth:
    """Clients, the token endpoint and bearer-token checks; thread-safe."""

    def __init__(self, *, token_ttl: float = DEFAULT_TOKEN_TTL) -> None:
        self.token_ttl = token_ttl
        self._clients: dict[str, str] = {}
        self._tokens: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def add_client(self, client_id: str, client_secret: str) -> ClientCredentials:
        with self._lock:
            self._clients[str(client_id)] = client_secret
        return ClientCredentials(str(client_id), client_secret)

    def remove_client(self, client_id: str) -> None:
        with self._lock:
            self._clients.pop(str(client_id), None)
            self._tokens = {token: grant for token, grant in self._tokens.items() if grant.client_id != client_id}

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (resource servers answer 401 until a new grant)."""
        with self._lock:
            self._tokens.clear()

    def grant_for(self, token: str, resource_server: str) -> Grant | None:
        """The grant behind a bearer token, if it is live and was issued for ``resource_server``."""
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None or grant.expires_at <= time.time() or grant.resource_server != resource_server:
            return None
        return grant

    def token(self, request: Request) -> Response:
        """``POST /v2/oauth2/token``."""
        form = request.form()

        def value(name: str) -> str:
            return (form.get(name) or [""])[-1]

        client_id = self._authenticate(request, value("client_id"), value("client_secret"))
        if client_id is None:
            return _oauth_error(401, "invalid_client", "Invalid client credentials")
        if value("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {value('grant_type')!r}")
        requested = split_scopes(value("scope"))
        if not requested:
            return _oauth_error(400, "invalid_scope", "A scope is required for the client_credentials grant")
        by_server: dict[str, list[str]] = {}
        for scope in requested:
            root = root_scope(scope)
            server = KNOWN_SCOPES.get(root)
            if server is None:
                return _oauth_error(400, "invalid_scope", f"Unknown scope {root!r}")
            if root not in by_server.setdefault(server, []):
                by_server[server].append(root)
        now = time.time()
        tokens: list[dict[str, object]] = []
        with self._lock:
            self._tokens = {token: grant for token, grant in self._tokens.items() if grant.expires_at > now}
            for server, scopes in by_server.items():
                access_token = secrets.token_urlsafe(32)
                scope_text = " ".join(scopes)
                self._tokens[access_token] = Grant(client_id, server, scope_text, now + self.token_ttl)
                tokens.append(
                    {
                        "access_token": access_token,
                        "scope": scope_text,
                        "expires_in": int(self.token_ttl),
                        "token_type": "Bearer",
                        "resource_server": server,
                    }
                )
        body = {**tokens[0], "other_tokens": tokens[1:]}
        return Response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate(self, request: Request, form_id: str, form_secret: str) -> str | None:
        scheme, _, encoded = request.header("Authorization").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                return None
            # RFC 6749 2.3.1 form-encodes both parts before joining them; most clients (requests) do not.
            candidates = [(raw_id, raw_secret), (unquote(raw_id), unquote(raw_secret))]
        elif form_id:
            candidates = [(form_id, form_secret)]
        else:
            return None
        with self._lock:
            clients = dict(self._clients)
        for client_id, secret in candidates:
            expected = clients.get(client_id)
            if expected is not None and hmac.compare_digest(expected.encode(), secret.encode()):
                return client_id
        return None

    @property
    def clients(self) -> Mapping[str, str]:
        with self._lock:
            return dict(self._clients)
