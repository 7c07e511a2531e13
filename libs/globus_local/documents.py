"""Checks on submitted transfer and delete documents, turning them into ``TransferSpec``/``DeleteSpec`` or a 400.

The fields are those of the Transfer API's task submission (what globus-sdk's ``TransferData``/``DeleteData``
build); an unknown field, a wrong type or a wrong ``DATA_TYPE`` is refused with 400 ``ClientError.BadRequest``
and a message naming the field, an empty ``DATA`` with ``ClientError.BadRequest.NoTransferItems`` ("A transfer
requires at least one item") or ``...NoDeleteItems``, an unknown collection with 404 ``EndpointNotFound``.
``sync_level`` is the integer the SDK sends (0 exists, 1 size, 2 mtime, 3 checksum); the names are accepted
too. ``deadline`` is ISO 8601 (naive means UTC) and must lie in the future; without one a task gets 24 hours.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from beamflow.globus_local.storage import Collection, InvalidPath, PathNotAllowed, path_parts
from beamflow.globus_local.wire import TransferFault, bad_request, utc_now

DEFAULT_DEADLINE = datetime.timedelta(hours=24)
MAX_LABEL_LENGTH = 128
SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
# Checksum algorithms a transfer item may name, as the Transfer API spells them.
CHECKSUM_ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
_NOTIFY = ("notify_on_succeeded", "notify_on_failed", "notify_on_inactive")
_COMMON_FIELDS = {
    "DATA_TYPE",
    "DATA",
    "submission_id",
    "label",
    "deadline",
    "store_base_path_info",
    "skip_activation_check",
    *_NOTIFY,
}
TRANSFER_FIELDS = _COMMON_FIELDS | {
    "source_endpoint",
    "destination_endpoint",
    "source_local_user",
    "destination_local_user",
    "verify_checksum",
    "preserve_timestamp",
    "encrypt_data",
    "skip_source_errors",
    "fail_on_quota_errors",
    "delete_destination_extra",
    "sync_level",
    "filter_rules",
    "recursive_symlinks",
}
DELETE_FIELDS = _COMMON_FIELDS | {"endpoint", "local_user", "recursive", "ignore_missing", "interpret_globs"}
TRANSFER_ITEM_FIELDS = {
    "DATA_TYPE",
    "source_path",
    "destination_path",
    "recursive",
    "external_checksum",
    "checksum_algorithm",
}

CollectionLookup = Callable[[str], Collection]


@dataclass(frozen=True)
class FilterRule:
    method: str  # "include" or "exclude"
    name: str  # a glob on the entry's name
    type: str | None  # "file", "dir" or None for both


@dataclass(frozen=True)
class TransferItem:
    source_path: str
    destination_path: str
    recursive: bool | None
    external_checksum: str | None = None
    checksum_algorithm: str | None = None


@dataclass(frozen=True)
class TransferSpec:
    submission_id: str
    source: Collection
    destination: Collection
    items: tuple[TransferItem, ...]
    label: str | None
    deadline: datetime.datetime
    sync_level: int | None
    verify_checksum: bool
    preserve_timestamp: bool
    skip_source_errors: bool
    fail_on_quota_errors: bool
    delete_destination_extra: bool
    encrypt_data: bool
    recursive_symlinks: str
    filter_rules: tuple[FilterRule, ...]


@dataclass(frozen=True)
class DeleteSpec:
    submission_id: str
    endpoint: Collection
    paths: tuple[str, ...]
    label: str | None
    deadline: datetime.datetime
    recursive: bool
    ignore_missing: bool
    interpret_globs: bool


def _check_fields(document: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r} in {what} document")


def _check_data_type(document: Mapping[str, Any], expected: str, where: str) -> None:
    data_type = document.get("DATA_TYPE", expected)
    if data_type != expected:
        raise bad_request(f"Invalid DATA_TYPE {data_type!r} for {where}, expected {expected!r}")


def _boolean(document: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = document.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"Invalid value for {name!r}: must be a boolean")
    return value


def _optional_string(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"Invalid value for {name!r}: must be a string")
    return value


def _uuid_field(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None or value == "":
        raise bad_request(f"Missing required field {name!r}")
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise bad_request(f"Invalid value for {name!r}: {value!r} is not a valid UUID") from None


def _label(document: Mapping[str, Any]) -> str | None:
    label = _optional_string(document, "label")
    if label is None:
        return None
    if len(label) > MAX_LABEL_LENGTH:
        raise bad_request(f"Invalid label: longer than {MAX_LABEL_LENGTH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in label):
        raise bad_request("Invalid label: control characters are not allowed")
    return label


def parse_deadline(value: object, now: datetime.datetime | None = None) -> datetime.datetime:
    now = now or utc_now()
    if value is None:
        return now + DEFAULT_DEADLINE
    if not isinstance(value, str):
        raise bad_request("Invalid value for 'deadline': must be an ISO 8601 date and time string")
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise bad_request(f"Invalid value for 'deadline': {value!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    if moment <= now:
        raise bad_request(f"Invalid value for 'deadline': {value!r} is in the past")
    return moment


def _check_path(path: object, name: str) -> str:
    if not isinstance(path, str) or not path:
        raise bad_request(f"Invalid value for {name!r}: must be a non-empty string")
    try:
        path_parts(path)
    except InvalidPath as exc:
        raise bad_request(f"Invalid value for {name!r}: {exc}") from None
    except PathNotAllowed:
        # Leaving the collection is the endpoint's refusal, reported when the task runs.
        pass
    return path


def _data(document: Mapping[str, Any], empty_code: str, empty_message: str) -> list[Any]:
    data = document.get("DATA")
    if data is None or data == []:
        raise bad_request(empty_message, code=empty_code)
    if not isinstance(data, list):
        raise bad_request("Invalid value for 'DATA': must be a list")
    return data


def _transfer_item(raw: object, index: int) -> TransferItem:
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid DATA[{index}]: must be a transfer_item object")
    if raw.get("DATA_TYPE") == "transfer_symlink_item":
        raise bad_request("transfer_symlink_item is not supported by this endpoint")
    _check_data_type(raw, "transfer_item", f"DATA[{index}]")
    _check_fields(raw, TRANSFER_ITEM_FIELDS, "transfer_item")
    recursive = raw.get("recursive")
    if recursive is not None and not isinstance(recursive, bool):
        raise bad_request(f"Invalid value for DATA[{index}].recursive: must be a boolean")
    algorithm = _optional_string(raw, "checksum_algorithm")
    if algorithm is not None and algorithm.upper() not in CHECKSUM_ALGORITHMS:
        raise bad_request(f"Unsupported checksum_algorithm {algorithm!r}")
    external = _optional_string(raw, "external_checksum")
    if external is not None and recursive:
        raise bad_request("external_checksum cannot be used with a recursive item")
    return TransferItem(
        source_path=_check_path(raw.get("source_path"), f"DATA[{index}].source_path"),
        destination_path=_check_path(raw.get("destination_path"), f"DATA[{index}].destination_path"),
        recursive=recursive,
        external_checksum=external.lower() if external else None,
        checksum_algorithm=algorithm.upper() if algorithm else None,
    )


def _sync_level(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value in SYNC_LEVELS:
        return SYNC_LEVELS[value]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
        raise bad_request(f"Invalid value for 'sync_level': {value!r} (must be 0, 1, 2 or 3)")
    return value


def _filter_rules(value: object) -> tuple[FilterRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_request("Invalid value for 'filter_rules': must be a list")
    rules: list[FilterRule] = []
    for index, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise bad_request(f"Invalid filter_rules[{index}]: must be a filter_rule object")
        _check_data_type(raw, "filter_rule", f"filter_rules[{index}]")
        method = raw.get("method", "exclude")
        name = raw.get("name")
        kind = raw.get("type")
        if method not in ("include", "exclude"):
            raise bad_request(f"Invalid filter_rules[{index}].method {method!r}")
        if not isinstance(name, str) or not name:
            raise bad_request(f"Invalid filter_rules[{index}].name: must be a non-empty string")
        if kind not in (None, "file", "dir"):
            raise bad_request(f"Invalid filter_rules[{index}].type {kind!r}")
        rules.append(FilterRule(method, name, kind))
    return tuple(rules)


def parse_transfer(document: object, find: CollectionLookup) -> TransferSpec:
    """A checked transfer document; ``TransferFault`` when the Transfer API would refuse it."""
    if not isinstance(document, dict):
        raise bad_request("The request body must be a JSON object")
    _check_data_type(document, "transfer", "a transfer submission")
    _check_fields(document, TRANSFER_FIELDS, "transfer")
    submission_id = _uuid_field(document, "submission_id")
    source_id = _uuid_field(document, "source_endpoint")
    destination_id = _uuid_field(document, "destination_endpoint")
    data = _data(document, "ClientError.BadRequest.NoTransferItems", "A transfer requires at least one item")
    items = tuple(_transfer_item(raw, index) for index, raw in enumerate(data))
    recursive_symlinks = document.get("recursive_symlinks") or "ignore"
    if recursive_symlinks not in ("ignore", "keep", "copy"):
        raise bad_request(f"Invalid value for 'recursive_symlinks': {recursive_symlinks!r}")
    for name in (*_NOTIFY, "store_base_path_info", "skip_activation_check"):
        _boolean(document, name)
    for name in ("source_local_user", "destination_local_user"):
        _optional_string(document, name)
    spec = TransferSpec(
        submission_id=submission_id,
        source=find(source_id),
        destination=find(destination_id),
        items=items,
        label=_label(document),
        deadline=parse_deadline(document.get("deadline")),
        sync_level=_sync_level(document.get("sync_level")),
        verify_checksum=_boolean(document, "verify_checksum"),
        preserve_timestamp=_boolean(document, "preserve_timestamp"),
        skip_source_errors=_boolean(document, "skip_source_errors"),
        fail_on_quota_errors=_boolean(document, "fail_on_quota_errors"),
        delete_destination_extra=_boolean(document, "delete_destination_extra"),
        encrypt_data=_boolean(document, "encrypt_data"),
        recursive_symlinks=recursive_symlinks,
        filter_rules=_filter_rules(document.get("filter_rules")),
    )
    if spec.delete_destination_extra and not any(item.recursive for item in items):
        raise bad_request("delete_destination_extra requires at least one recursive item")
    return spec


def parse_delete(document: object, find: CollectionLookup) -> DeleteSpec:
    """A checked delete document; ``TransferFault`` when the Transfer API would refuse it."""
    if not isinstance(document, dict):
        raise bad_request("The request body must be a JSON object")
    _check_data_type(document, "delete", "a delete submission")
    _check_fields(document, DELETE_FIELDS, "delete")
    submission_id = _uuid_field(document, "submission_id")
    endpoint_id = _uuid_field(document, "endpoint")
    data = _data(document, "ClientError.BadRequest.NoDeleteItems", "A delete requires at least one item")
    paths: list[str] = []
    for index, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise bad_request(f"Invalid DATA[{index}]: must be a delete_item object")
        _check_data_type(raw, "delete_item", f"DATA[{index}]")
        _check_fields(raw, {"DATA_TYPE", "path"}, "delete_item")
        paths.append(_check_path(raw.get("path"), f"DATA[{index}].path"))
    for name in (*_NOTIFY, "store_base_path_info", "skip_activation_check"):
        _boolean(document, name)
    _optional_string(document, "local_user")
    return DeleteSpec(
        submission_id=submission_id,
        endpoint=find(endpoint_id),
        paths=tuple(paths),
        label=_label(document),
        deadline=parse_deadline(document.get("deadline")),
        recursive=_boolean(document, "recursive"),
        ignore_missing=_boolean(document, "ignore_missing"),
        interpret_globs=_boolean(document, "interpret_globs"),
    )


def new_hash(algorithm: str | None) -> Any:
    """A hashlib object for a Transfer API checksum algorithm name (MD5 when none is named)."""
    return hashlib.new(CHECKSUM_ALGORITHMS[(algorithm or "MD5").upper()], usedforsecurity=False)


def endpoint_not_found(collection_id: str) -> TransferFault:
    return TransferFault(404, "EndpointNotFound", f"No such endpoint with id '{collection_id}'")
