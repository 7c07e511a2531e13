"""HTTP errors in the shape the SciCat backend (NestJS) answers them, so clients see the same bodies here.

NestJS renders ``new NotFoundException()`` as ``{"message": "Not Found", "statusCode": 404}`` and an exception
with a message as ``{"message": ..., "error": "Not Found", "statusCode": 404}``; its validation pipe answers
``{"message": ["owner must be a string", ...], "error": "Bad Request", "statusCode": 400}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class HttpError(Exception):
    """An error answer: the status and the JSON body to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.body = body


def _with_message(status: HTTPStatus, message: str | list[str] | None) -> HttpError:
    if message is None:
        return HttpError(status, {"message": status.phrase, "statusCode": int(status)})
    return HttpError(status, {"message": message, "error": status.phrase, "statusCode": int(status)})


def bad_request(message: str | list[str]) -> HttpError:
    """400, as the validation pipe or a failed JSON parse answers it."""
    return _with_message(HTTPStatus.BAD_REQUEST, message)


def unauthorized() -> HttpError:
    """401, as passport answers a wrong password or a request that needs a user and has none."""
    return _with_message(HTTPStatus.UNAUTHORIZED, None)


def forbidden(message: str = "Unauthorized access") -> HttpError:
    """403, as the dataset access checks answer an anonymous read of a private dataset."""
    return _with_message(HTTPStatus.FORBIDDEN, message)


def not_found(message: str | None = None) -> HttpError:
    """404; with a message for an unknown dataset, without one for an unknown route parameter."""
    return _with_message(HTTPStatus.NOT_FOUND, message)


def conflict(message: str) -> HttpError:
    """409, as the backend answers a duplicate pid (MongoDB error 11000)."""
    return _with_message(HTTPStatus.CONFLICT, message)


def payload_too_large() -> HttpError:
    """413, as body-parser answers a body above the backend's 16 MB JSON limit."""
    return _with_message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request entity too large")


def no_route(method: str, path: str) -> HttpError:
    """404 for a path no route matches, in Nest's words."""
    return _with_message(HTTPStatus.NOT_FOUND, f"Cannot {method} {path}")
