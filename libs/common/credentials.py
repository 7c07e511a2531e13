"""Log in to every remote account a configuration names, and say what works and what to do about what does not.

``beamflow check --credentials FILE`` prints one line per account; each service runs the same check on the
accounts it uses before it takes any work (``require_credentials``), and refuses to start when one fails.

- Globus (each Globus endpoint's service account): a client-credentials token for Transfer (its lifetime is
  reported), then a listing of the endpoint's root on its collection, which fails without the consent or the
  permission the copies need.
- NERSC Superfacility API (HPSS archives, NERSC compute sites): a token from the client's key, and the
  machine's status.
- SciCat (when ``catalog.url`` is set): a login as the configured user.

Secrets are resolved here and never printed: a report names the variable or file that holds one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from beamflow.common.compute_config import NerscCompute
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import GlobusEndpoint, HpssEndpoint, SfapiAccess
from beamflow.common.errors import BeamflowError, ConfigError, CredentialsRejected, ServiceUnreachable
from beamflow.common.globus_session import globus_errors, transfer_client
from beamflow.common.sfapi_session import sfapi_compute

#: The name under which the catalog account is reported and asked for.
CATALOG: str = "catalog"


@dataclass(frozen=True)
class CredentialReport:
    account: str
    """What was checked: "globus:nersc832", "sfapi:hpss832", "scicat"."""
    ok: bool
    detail: str
    unreachable: bool = False
    """The service did not answer: nothing was learnt about the credentials (a service starts anyway)."""


def accounts(config: BeamflowConfig) -> dict[str, GlobusEndpoint | SfapiAccess | None]:
    """Every account the configuration names, by the endpoint or site that uses it (None: the catalog)."""
    found: dict[str, GlobusEndpoint | SfapiAccess | None] = {}
    for name, endpoint in config.endpoints.items():
        if isinstance(endpoint, GlobusEndpoint | HpssEndpoint):
            found[name] = endpoint
    for name, site in config.compute.items():
        if isinstance(site, NerscCompute):
            found[name] = site
    if config.catalog.url:
        found[CATALOG] = None
    return found


def _hours(seconds: float) -> str:
    return f"{timedelta(seconds=int(seconds))}"


def _check_globus(name: str, endpoint: GlobusEndpoint) -> CredentialReport:
    import globus_sdk

    account = f"globus:{name}"
    try:
        client_id = endpoint.client_id.resolve().get_secret_value()
        secret = endpoint.client_secret.resolve().get_secret_value()
        with globus_errors(f"logging in for {name}", name):
            auth = globus_sdk.ConfidentialAppAuthClient(client_id, secret)
            tokens = auth.oauth2_client_credentials_tokens(requested_scopes=globus_sdk.TransferClient.scopes.all)
            lifetime = tokens.by_resource_server[globus_sdk.TransferClient.resource_server]["expires_at_seconds"]
        with globus_errors(f"listing {endpoint.root} on collection {endpoint.collection_id}", name):
            transfer_client(endpoint).operation_ls(endpoint.collection_id, path=endpoint.root, limit=1)
    except ConfigError as exc:
        return CredentialReport(account, False, "; ".join(exc.problems))
    except ServiceUnreachable as exc:
        return CredentialReport(account, False, str(exc), unreachable=True)
    except BeamflowError as exc:
        detail = str(exc)
        if "ClientError.NotFound" in detail:
            # The account is accepted and the collection answered; the first copy creates the folder.
            return CredentialReport(account, True, f"logged in; {endpoint.root} does not exist yet on its collection")
        if "ConsentRequired" in detail:
            detail += "; the service account must consent to the collection's data_access scope (Globus web app)"
        return CredentialReport(account, False, detail)
    left = _hours(lifetime - time.time())
    return CredentialReport(account, True, f"token valid for {left}; lists {endpoint.root} on its collection")


async def _check_sfapi(name: str, access: SfapiAccess) -> CredentialReport:
    import httpx
    from sfapi_client import SfApiError

    account = f"sfapi:{name}"
    try:
        async with sfapi_compute(access, timedelta(seconds=10)) as machine:
            await machine.client.token
            status = f"{access.machine} is {machine.status}"
    except ConfigError as exc:
        return CredentialReport(account, False, "; ".join(exc.problems))
    except (OSError, httpx.TransportError) as exc:
        return CredentialReport(account, False, f"NERSC's API did not answer: {exc}", unreachable=True)
    except SfApiError as exc:
        return CredentialReport(account, False, f"NERSC's API could not be used: {exc}")
    except Exception as exc:  # authlib's OAuthError and httpx errors carry the server's reason
        return CredentialReport(
            account,
            False,
            f"NERSC refused the client ({type(exc).__name__}: {exc}); check the client id and its key, and "
            "that the client has not expired (NERSC Iris lists its expiry)",
        )
    return CredentialReport(account, True, f"token issued; {status}")


def _check_scicat(config: BeamflowConfig) -> CredentialReport:
    import requests
    from pyscicat.client import ScicatClient

    url = config.catalog.url
    try:
        password = config.catalog.password.resolve().get_secret_value()
        ScicatClient(
            base_url=str(url),
            username=config.catalog.username,
            password=password,
            timeout_seconds=int(config.catalog.timeout.total_seconds()),
        )
    except ConfigError as exc:
        return CredentialReport("scicat", False, "; ".join(exc.problems))
    except requests.ConnectionError as exc:
        return CredentialReport("scicat", False, f"{url} did not answer: {exc}", unreachable=True)
    except Exception as exc:  # pyscicat raises its own and requests' errors
        return CredentialReport(
            "scicat", False, f"logging in to {url} as {config.catalog.username} failed: {type(exc).__name__}: {exc}"
        )
    return CredentialReport("scicat", True, f"logged in to {url} as {config.catalog.username}")


async def check_credentials(config: BeamflowConfig, only: Iterable[str] | None = None) -> list[CredentialReport]:
    """One report per account (those named in ``only``, by endpoint or site name, or ``catalog``)."""
    wanted = set(only) if only is not None else None
    reports = []
    for name, account in sorted(accounts(config).items()):
        if wanted is not None and name not in wanted:
            continue
        if isinstance(account, GlobusEndpoint):
            reports.append(await asyncio.to_thread(_check_globus, name, account))
        elif account is not None:
            reports.append(await _check_sfapi(name, account))
        else:
            reports.append(await asyncio.to_thread(_check_scicat, config))
    return reports


async def require_credentials(config: BeamflowConfig, names: Iterable[str], service: str) -> None:
    """Raise ``CredentialsRejected`` naming every failing account among ``names``; a service's start check.

    An account whose service does not answer is not a reason to refuse: the work waits and retries.
    """
    failed = [r for r in await check_credentials(config, names) if not r.ok and not r.unreachable]
    if failed:
        lines = "; ".join(f"{r.account}: {r.detail}" for r in failed)
        raise CredentialsRejected(
            f"{service} will not start: {lines}. Fix them and check with `beamflow check --credentials`"
        )
