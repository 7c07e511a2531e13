"""What goes over the wire between globus-sdk and the Globus stand-in besides plain requests and answers
(``Request``/``Response``, from ``beamflow.common.standin_http``): the error bodies, request ids and times.

The Transfer API answers every error as ``{"code", "message", "request_id", "resource"}``; globus-sdk's
``TransferAPIError`` reads ``code``/``message``/``request_id`` from exactly that shape ("type zero" errors), so
``TransferFault(...).response()`` is what every refusal in the stand-in turns into. Globus Auth answers OAuth
errors the OAuth way (``{"error": "invalid_client"}``); see ``auth``. Times are UTC: task documents use
``2024-05-01T12:00:00+00:00``, events and file listings ``2024-05-01 12:00:00+00:00``, as the service does.
"""

from __future__ import annotations

import datetime
import secrets
import string

from beamflow.common.standin_http import Response

_REQUEST_ID_ALPHABET = string.ascii_letters + string.digits


def new_request_id() -> str:
    """A request id shaped like the Transfer API's (nine letters and digits)."""
    return "".join(secrets.choice(_REQUEST_ID_ALPHABET) for _ in range(9))


class TransferFault(Exception):
    """A Transfer API error answer; ``resource`` is the request path the body names."""

    def __init__(self, status: int, code: str, message: str, resource: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.resource = resource

    def response(self, resource: str | None = None) -> Response:
        body = {
            "code": self.code,
            "message": self.message,
            "request_id": new_request_id(),
            "resource": resource if resource is not None else self.resource,
        }
        return Response(self.status, body)


def bad_request(message: str, code: str = "ClientError.BadRequest") -> TransferFault:
    return TransferFault(400, code, message)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def task_time(moment: datetime.datetime | None) -> str | None:
    """A time as task documents write it: ``2024-05-01T12:00:00+00:00`` (whole seconds, UTC)."""
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).replace(microsecond=0).isoformat()


def event_time(moment: datetime.datetime) -> str:
    """A time as events and file documents write it: ``2024-05-01 12:00:00+00:00``."""
    return moment.astimezone(datetime.UTC).replace(microsecond=0).isoformat(sep=" ")
