"""One way to reach Globus Transfer with a service account, and to say what went wrong in our terms.

The transfer and prune controllers and the credentials check all build their client here: a ``ClientApp``
(client credentials from the endpoint's secrets, tokens kept in memory, never on disk) and a
``TransferClient`` on it. globus-sdk is synchronous: callers run these functions in a worker thread.

``globus_errors`` turns the SDK's exceptions into beamflow's: refused credentials are permanent (an operator
fixes the secret or the consent), a network error or a server error is transient, a refusal of the request
itself (permissions, a missing collection) is permanent and names the Globus code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from beamflow.common.endpoints import GlobusEndpoint
from beamflow.common.errors import CredentialsRejected, ServiceUnreachable, TransferFailed

if TYPE_CHECKING:
    import globus_sdk

#: The name beamflow's service-account app shows in Globus (task listings, consents).
APP_NAME = "beamflow"


def transfer_client(endpoint: GlobusEndpoint) -> globus_sdk.TransferClient:
    """A Transfer client logged in as the endpoint's service account (the token is fetched on first use)."""
    import globus_sdk

    app = globus_sdk.ClientApp(
        APP_NAME,
        client_id=endpoint.client_id.resolve().get_secret_value(),
        client_secret=endpoint.client_secret.resolve().get_secret_value(),
        config=globus_sdk.GlobusAppConfig(token_storage="memory"),
    )
    return globus_sdk.TransferClient(app=app)


@contextmanager
def globus_errors(what: str, endpoint_name: str) -> Iterator[None]:
    """Run SDK calls for ``what``; their failures leave as CredentialsRejected, ServiceUnreachable or
    TransferFailed with a message that says what to do."""
    import globus_sdk

    try:
        yield
    except globus_sdk.AuthAPIError as exc:
        said = exc.raw_json.get("error") if isinstance(exc.raw_json, dict) else None
        raise CredentialsRejected(
            f"{what}: Globus Auth refused the service account of endpoint {endpoint_name} "
            f"({exc.http_status} {said or exc.code}); check the client id and secret its config names"
        ) from None
    except globus_sdk.NetworkError as exc:
        raise ServiceUnreachable(f"{what}: Globus did not answer ({type(exc).__name__}); retrying") from None
    except globus_sdk.GlobusAPIError as exc:
        if exc.http_status == 401:
            raise CredentialsRejected(
                f"{what}: Globus Transfer refused the token of endpoint {endpoint_name}'s service account "
                f"({exc.code}); check its client and its consents"
            ) from None
        if exc.http_status >= 500 or exc.http_status == 429:
            raise ServiceUnreachable(f"{what}: Globus answered {exc.http_status} {exc.code}; retrying") from None
        raise TransferFailed(
            f"{what}: Globus refused ({exc.http_status} {exc.code}: {exc.message}); for a permission error, "
            f"grant endpoint {endpoint_name}'s service account access on the collection, then replay"
        ) from None
