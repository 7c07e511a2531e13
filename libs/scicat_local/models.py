"""What the local SciCat accepts: the backend's request DTOs as pydantic models, and its 400 messages.

The field lists follow the SciCat backend's ``/api/v3`` DTOs (``CreateRawDatasetObsoleteDto``,
``CreateDerivedDatasetObsoleteDto``, their ``PartialUpdate*`` for PATCH, ``CreateDatasetOrigDatablockDto``
with ``DataFileDto``, ``CreateAttachmentDto``), validated the way its global pipe does (``whitelist`` +
``forbidNonWhitelisted``): a field the DTO does not declare is refused, not ignored. That is why fields
pyscicat's models can carry but the backend does not declare (``history``, ``createdBy``, ``updatedBy``,
``createdAt``, ``updatedAt`` on a dataset; ``datasetId``/``ownerGroup`` on a datablock posted under a
dataset) are refused here too. No value is coerced: ``"5"`` is not an integer, as in class-validator.

Errors are rendered as class-validator messages ("property foo should not exist", "owner must be a
string", nested ones prefixed with their path: "dataFileList.0.time must be a valid ISO 8601 date string").
A missing required field gets "<field> should not be empty" and its type message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar, get_args

from beamflow.scicat_local.errors import HttpError, bad_request
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

_M = TypeVar("_M", bound=BaseModel)

# class-validator's messages, keyed by the error kind our validators raise; {p} is the property's path.
_MESSAGES: dict[str, str] = {
    "is_string": "{p} must be a string",
    "is_int": "{p} must be an integer number",
    "is_number": "{p} must be a number conforming to the specified constraints",
    "is_bool": "{p} must be a boolean value",
    "is_object": "{p} must be an object",
    "is_array": "{p} must be an array",
    "each_string": "each value in {p} must be a string",
    "is_date": "{p} must be a valid ISO 8601 date string",
    "is_email": "{p} must be an email",
    "email_list": "{p} must be an email or a list of emails separated by semicolons",
    "is_url": "{p} must be a URL address",
    "not_empty": "{p} should not be empty",
    "dataset_type": "{p} must be one of the following values: raw, derived",
    "data_uri": "{p} must be a data URI (data:<media type>[;base64],<data>)",
    "nested": "nested property {p} must be either object or array",
}

_EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")
_URL = re.compile(
    r"^([A-Za-z][A-Za-z0-9+.-]*://)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*(:\d+)?(/\S*)?$"
)
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*(;base64)?,", re.ASCII)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")


def _fail(kind: str) -> PydanticCustomError:
    return PydanticCustomError(kind, kind)


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail("is_string")
    return value


def _non_empty_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail("is_string")
    if not value:
        raise _fail("not_empty")
    return value


def _integer(value: Any) -> Any:
    # JSON has one number type: 5.0 is an integer to class-validator; a boolean never is.
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise _fail("is_int")
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("is_number")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _fail("is_bool")
    return value


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail("is_object")
    return value


def _string_list(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail("each_string")
    return value


def _array(value: Any) -> Any:
    if not isinstance(value, list):
        raise _fail("is_array")
    return value


def _non_empty_array(value: Any) -> Any:
    if not isinstance(value, list):
        raise _fail("is_array")
    if not value:
        raise _fail("not_empty")
    return value


def parse_iso_datetime(value: str) -> datetime:
    """Parse an ISO 8601 date or date-time (``Z``, offsets and a space separator allowed)."""
    if not _ISO_DATE.match(value):
        raise ValueError(f"not an ISO 8601 date: {value!r}")
    return datetime.fromisoformat(value)


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail("is_date")
    try:
        parse_iso_datetime(value)
    except ValueError:
        raise _fail("is_date") from None
    return value


def _email(value: Any) -> Any:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise _fail("is_email")
    return value


def _email_list(value: Any) -> Any:
    if not isinstance(value, str) or not all(_EMAIL.match(part.strip()) for part in value.split(";")):
        raise _fail("email_list")
    return value


def _url(value: Any) -> Any:
    if not isinstance(value, str) or not _URL.match(value):
        raise _fail("is_url")
    return value


def _dataset_type(value: Any) -> Any:
    if value not in ("raw", "derived"):
        raise _fail("dataset_type")
    return value


def _data_uri(value: Any) -> Any:
    # Stricter than the backend (which checks only IsString): a thumbnail the frontend cannot show is a bug.
    if not isinstance(value, str):
        raise _fail("is_string")
    if not _DATA_URI.match(value):
        raise _fail("data_uri")
    return value


Str = Annotated[Any, PlainValidator(_string)]
NonEmptyStr = Annotated[Any, PlainValidator(_non_empty_string)]
Int = Annotated[Any, PlainValidator(_integer)]
Number = Annotated[Any, PlainValidator(_number)]
Bool = Annotated[Any, PlainValidator(_boolean)]
Obj = Annotated[Any, PlainValidator(_object)]
StrList = Annotated[Any, PlainValidator(_string_list)]
IsoDate = Annotated[Any, PlainValidator(_iso_date)]
Email = Annotated[Any, PlainValidator(_email)]
EmailList = Annotated[Any, PlainValidator(_email_list)]
Url = Annotated[Any, PlainValidator(_url)]
DatasetType = Annotated[Any, PlainValidator(_dataset_type)]
DataUri = Annotated[Any, PlainValidator(_data_uri)]

# The message kind of each validator, to name the type of a required field that is missing.
_KIND_OF: dict[Callable[[Any], Any], str] = {
    _string: "is_string",
    _non_empty_string: "is_string",
    _integer: "is_int",
    _number: "is_number",
    _boolean: "is_bool",
    _object: "is_object",
    _string_list: "each_string",
    _array: "is_array",
    _non_empty_array: "is_array",
    _iso_date: "is_date",
    _email: "is_email",
    _email_list: "email_list",
    _url: "is_url",
    _dataset_type: "dataset_type",
    _data_uri: "is_string",
}


class _Dto(BaseModel):
    """A request body: undeclared fields are refused, as with the backend's forbidNonWhitelisted."""

    model_config = ConfigDict(extra="forbid")


class Technique(_Dto):
    """``CreateTechniqueDto``: one entry of a dataset's ``techniques``."""

    pid: Str
    name: Str


class Relationship(_Dto):
    """``CreateRelationshipDto``: one entry of a dataset's ``relationships``."""

    pid: Str
    relationship: Str


class _DatasetOptional(_Dto):
    """The optional fields every dataset accepts (``OwnableDto`` + ``UpdateDatasetObsoleteDto``)."""

    accessGroups: StrList | None = None
    instrumentGroup: Str | None = None
    ownerEmail: Email | None = None
    orcidOfOwner: Str | None = None
    sourceFolderHost: Url | None = None
    size: Int | None = None
    packedSize: Int | None = None
    numberOfFiles: Int | None = None
    numberOfFilesArchived: Int | None = None
    validationStatus: Str | None = None
    keywords: StrList | None = None
    description: Str | None = None
    datasetName: Str | None = None
    classification: Str | None = None
    license: Str | None = None
    isPublished: Bool | None = None
    techniques: Annotated[list[Technique], BeforeValidator(_array)] | None = None
    sharedWith: StrList | None = None
    relationships: Annotated[list[Relationship], BeforeValidator(_array)] | None = None
    # Declared with IsOptional only: any value passes, as in the backend.
    datasetlifecycle: Any = None
    scientificMetadata: Obj | None = None
    scientificMetadataSchema: Str | None = None
    scientificMetadataValid: Bool | None = None
    comment: Str | None = None
    dataQualityMetrics: Number | None = None
    proposalId: Str | None = None
    runNumber: Str | None = None


class _RawOptional(_DatasetOptional):
    """Optional fields of a raw dataset (``UpdateRawDatasetObsoleteDto``)."""

    startTime: IsoDate | None = None
    endTime: IsoDate | None = None
    dataFormat: Str | None = None
    sampleId: Str | None = None
    instrumentId: Str | None = None
    # The backend declares these on raw datasets with IsOptional only (no type check).
    investigator: Any = None
    inputDatasets: Any = None
    usedSoftware: Any = None
    jobParameters: Any = None
    jobLogData: Any = None


class _DerivedOptional(_DatasetOptional):
    """Optional fields of a derived dataset (``UpdateDerivedDatasetObsoleteDto``)."""

    jobParameters: Obj | None = None
    jobLogData: Str | None = None


class RawDatasetCreate(_RawOptional):
    """``POST Datasets`` with ``type: raw``."""

    pid: Str | None = None
    type: DatasetType
    version: Str | None = None
    ownerGroup: Str
    owner: Str
    contactEmail: EmailList
    sourceFolder: Str
    creationTime: IsoDate
    principalInvestigator: Str
    creationLocation: Str


class DerivedDatasetCreate(_DerivedOptional):
    """``POST Datasets`` with any other ``type`` (the backend validates those against the derived DTO)."""

    pid: Str | None = None
    type: DatasetType
    version: Str | None = None
    ownerGroup: Str
    owner: Str
    contactEmail: EmailList
    sourceFolder: Str
    creationTime: IsoDate
    investigator: Str
    inputDatasets: StrList
    usedSoftware: StrList


class RawDatasetPatch(_RawOptional):
    """``PATCH Datasets/{pid}`` of a raw dataset: every field optional; ``pid`` and ``type`` are refused."""

    ownerGroup: Str | None = None
    owner: Str | None = None
    contactEmail: EmailList | None = None
    sourceFolder: Str | None = None
    creationTime: IsoDate | None = None
    principalInvestigator: Str | None = None
    creationLocation: Str | None = None


class DerivedDatasetPatch(_DerivedOptional):
    """``PATCH Datasets/{pid}`` of a derived dataset: every field optional; ``pid`` and ``type`` are refused."""

    ownerGroup: Str | None = None
    owner: Str | None = None
    contactEmail: EmailList | None = None
    sourceFolder: Str | None = None
    creationTime: IsoDate | None = None
    investigator: Str | None = None
    inputDatasets: StrList | None = None
    usedSoftware: StrList | None = None


class DataFile(_Dto):
    """``DataFileDto``: one file of an origdatablock. ``time`` is required (pyscicat makes it optional)."""

    path: Str
    size: Number
    time: IsoDate
    chk: Str | None = None
    uid: Str | None = None
    gid: Str | None = None
    perm: Str | None = None


class OrigDatablockCreate(_Dto):
    """``POST Datasets/{pid}/origdatablocks`` (``CreateDatasetOrigDatablockDto``).

    The backend takes ``datasetId``, ``ownerGroup``, ``accessGroups`` and ``instrumentGroup`` from the
    dataset and refuses them in the body. ``chkAlg`` is a string ("sha256", "xxh3-128"...).
    """

    size: Int
    chkAlg: NonEmptyStr | None = None
    dataFileList: Annotated[list[DataFile], BeforeValidator(_non_empty_array)]


class AttachmentCreate(_Dto):
    """``POST Datasets/{pid}/attachments`` (``CreateAttachmentDto``); ``datasetId`` and ``ownerGroup`` are
    then taken from the dataset, as the backend does."""

    ownerGroup: Str
    accessGroups: StrList | None = None
    instrumentGroup: Str | None = None
    thumbnail: DataUri | None = None
    caption: Str
    id: Str | None = None
    datasetId: Str | None = None
    proposalId: Str | None = None
    sampleId: Str | None = None
    # Required in some backend versions' v3 attachment DTO, absent from others: accepted, never required.
    isPublished: Bool | None = None


def validate_body(model: type[_M], body: Any) -> _M:
    """Validate a request body against ``model``; a refusal is the backend's 400 with every message."""
    if not isinstance(body, Mapping):
        # class-validator's forbidUnknownValues answer for anything that is not an object.
        raise bad_request(["an unknown value was passed to the validate function"])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(model, exc) from None


def validation_error(model: type[BaseModel], exc: ValidationError) -> HttpError:
    """The 400 answer for a pydantic ``ValidationError`` raised by one of these models."""
    messages: list[str] = []
    for error in exc.errors():
        for message in _messages_for(model, error["type"], tuple(error["loc"])):
            if message not in messages:
                messages.append(message)
    return bad_request(messages)


def _messages_for(model: type[BaseModel], kind: str, loc: tuple[str | int, ...]) -> list[str]:
    path = ".".join(str(part) for part in loc)
    if kind == "extra_forbidden":
        parent = ".".join(str(part) for part in loc[:-1])
        return [f"{parent + '.' if parent else ''}property {loc[-1]} should not exist"]
    if kind == "missing":
        field_kind = _field_kind(model, loc)
        messages = [_MESSAGES["not_empty"].format(p=path)]
        if field_kind is not None:
            messages.append(_MESSAGES[field_kind].format(p=path))
        return messages
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return [_MESSAGES["nested"].format(p=path)]
    return [_MESSAGES.get(kind, "{p} is invalid").format(p=path)]


def _field_kind(model: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The message kind of the field at ``loc``, found by walking nested models' fields."""
    current: type[BaseModel] | None = model
    for index, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        if index == len(loc) - 1:
            for meta in info.metadata:
                if isinstance(meta, PlainValidator | BeforeValidator):
                    return _KIND_OF.get(meta.func)  # type: ignore[arg-type]
            return None
        current = _nested_model(info.annotation)
    return None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None
