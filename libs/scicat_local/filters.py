"""The ``filter`` of ``GET Datasets`` (and ``fullquery``), applied to stored JSON documents as the backend does.

The backend hands the filter to MongoDB after two rewrites, reproduced here exactly:

1. ``FilterPipe`` replaces loopback operators *textually* in the raw JSON: ``{"inq":`` -> ``$in``,
   ``{"nin":`` -> ``$nin``, ``{"and":[`` -> ``$and``, ``{"or":[`` -> ``$or``. The last two need the ``[``
   right after the colon: ``json.dumps`` (pyscicat) writes ``{"and": [`` with a space, which is then *not*
   rewritten and matches nothing (a field called ``and``). Use ``$and``/``$or``, which always work.
2. ``replaceLikeOperator`` turns ``{"like": "x"}`` into ``{"$regex": "x"}`` (case-sensitive search).

``where`` then has MongoDB semantics: ``{"a.b": v}`` walks into sub-documents and through arrays; equality
with an array field matches when the array contains the value; ``{"x": null}`` matches a missing field; a
sub-document without ``$`` keys is compared as a whole. Operators: ``$eq $ne $in $nin $gt $gte $lt $lte
$exists $regex``/``$options $all $size`` and ``$and $or $nor``; any other ``$`` operator is refused (Mongo
would fail the query). ``fields`` is a projection (a list of names, or ``{name: 1|0}``). Paging is read from
``limits: {skip, limit, order}`` (order ``"field:asc"`` or ``"field:desc"``), default limit 100, as the
backend's ``parseLimitFilters``. Top-level ``skip``/``limit``/``order`` are honoured here only when
``limits`` is absent: the backend ignores them, so code meant for the real backend should use ``limits``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LIMIT = 100


class FilterError(ValueError):
    """The filter cannot be parsed or uses something this server does not support."""


class _Missing:
    """A path that leads nowhere (distinct from a stored ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_LOGICAL = {"$and", "$or", "$nor"}


@dataclass(frozen=True)
class Query:
    """A parsed filter: what to match, which fields to return, and the page."""

    where: dict[str, Any] = field(default_factory=dict)
    fields: list[str] | dict[str, Any] | None = None
    skip: int = 0
    limit: int | None = DEFAULT_LIMIT
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    include: tuple[str, ...] = ()


def loopback_to_mongo(raw: str) -> str:
    """The backend's textual operator rewrite (``FilterPipe``), quirks included."""
    raw = raw.replace('{"inq":', '{"$in":').replace('{"nin":', '{"$nin":')
    return raw.replace('{"and":[', '{"$and":[').replace('{"or":[', '{"$or":[')


def replace_like(where: Any) -> Any:
    """``{"like": "x"}`` becomes ``{"$regex": "x"}`` anywhere in ``where`` (``replaceLikeOperator``)."""
    if isinstance(where, list):
        return [replace_like(item) for item in where]
    if not isinstance(where, dict):
        return where
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key == "like" and not isinstance(value, dict | list):
            out["$regex"] = value
        else:
            out[key] = replace_like(value)
    return out


def parse_filter(raw: str | None, *, default_limit: int | None = DEFAULT_LIMIT) -> Query:
    """Parse the ``filter`` query parameter of ``GET Datasets``."""
    if raw is None or raw == "":
        return Query(limit=default_limit)
    try:
        data = json.loads(loopback_to_mongo(raw))
    except json.JSONDecodeError as exc:
        raise FilterError(f"filter is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise FilterError("filter must be a JSON object")
    where = data.get("where")
    where = {} if where is None else where
    if not isinstance(where, dict):
        raise FilterError("filter.where must be an object")
    fields = data.get("fields")
    if fields is not None and not isinstance(fields, list | dict):
        raise FilterError("filter.fields must be a list of names or an object")
    limits = data.get("limits")
    if limits is not None and not isinstance(limits, dict):
        raise FilterError("filter.limits must be an object")
    # The backend reads only `limits`; loopback's top-level keys are a convenience of this server.
    page = limits if limits is not None else {k: data[k] for k in ("skip", "limit", "order") if k in data}
    skip, limit, order = _page(page, default_limit)
    return Query(
        where=replace_like(where),
        fields=fields,
        skip=skip,
        limit=limit,
        order=order,
        include=_include(data.get("include")),
    )


def _page(page: Mapping[str, Any], default_limit: int | None) -> tuple[int, int | None, tuple[tuple[str, bool], ...]]:
    skip, limit = page.get("skip") or 0, page.get("limit") or default_limit
    for name, value in (("skip", skip), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise FilterError(f"limits.{name} must be a non-negative integer")
    return skip, limit, parse_order(page.get("order"))


def parse_order(order: Any) -> tuple[tuple[str, bool], ...]:
    """``"field:asc"`` / ``"field:desc"`` (also loopback's ``"field DESC"``), or a list of them."""
    if order is None or order == "":
        return ()
    items = order if isinstance(order, list) else [order]
    parsed: list[tuple[str, bool]] = []
    for item in items:
        if not isinstance(item, str):
            raise FilterError("limits.order must be a string like 'creationTime:desc' or a list of them")
        name, _, direction = item.replace(" ", ":").partition(":")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            # parseLimitFilters ignores an order whose direction is neither asc nor desc.
            continue
        parsed.append((name, direction == "desc"))
    return tuple(parsed)


def _include(include: Any) -> tuple[str, ...]:
    if include is None:
        return ()
    items = include if isinstance(include, list) else [include]
    relations = []
    for item in items:
        relation = item.get("relation") if isinstance(item, dict) else item
        if not isinstance(relation, str):
            raise FilterError("filter.include must list relations like {'relation': 'origdatablocks'}")
        relations.append(relation)
    return tuple(relations)


def resolve(doc: Any, path: str) -> list[Any]:
    """The values a dotted path reaches, walking sub-documents and, like MongoDB, through arrays."""
    values: list[Any] = [doc]
    for part in path.split("."):
        reached: list[Any] = []
        for value in values:
            if isinstance(value, dict):
                reached.append(value.get(part, MISSING))
            elif isinstance(value, list):
                if part.isdigit() and int(part) < len(value):
                    reached.append(value[int(part)])
                reached.extend(item.get(part, MISSING) for item in value if isinstance(item, dict))
            else:
                reached.append(MISSING)
        values = reached or [MISSING]
    return values


def matches(doc: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """True when ``doc`` satisfies the MongoDB-style condition ``where``."""
    for key, condition in where.items():
        if key in _LOGICAL:
            if not isinstance(condition, list) or not condition or not all(isinstance(c, dict) for c in condition):
                raise FilterError(f"{key} needs a non-empty list of conditions")
            results = (matches(doc, c) for c in condition)
            ok = all(results) if key == "$and" else any(results)
            if ok == (key == "$nor"):
                return False
        elif key.startswith("$"):
            raise FilterError(f"unsupported top-level operator {key}")
        elif not _field_matches(resolve(doc, key), condition):
            return False
    return True


def _is_operator_dict(condition: Any) -> bool:
    return isinstance(condition, dict) and bool(condition) and all(k.startswith("$") for k in condition)


def _field_matches(values: list[Any], condition: Any) -> bool:
    if _is_operator_dict(condition):
        options = condition.get("$options", "")
        return all(_operator(values, op, arg, options) for op, arg in condition.items() if op != "$options")
    if isinstance(condition, dict) and any(k.startswith("$") for k in condition):
        raise FilterError(f"cannot mix operators and field names in {condition}")
    return any(_equals_or_contains(value, condition) for value in values)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python but not in MongoDB.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _equals_or_contains(value: Any, target: Any) -> bool:
    if target is None:
        return value is MISSING or value is None
    if value is MISSING:
        return False
    if _same(value, target):
        return True
    return isinstance(value, list) and any(_same(item, target) for item in value)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def _scalars(values: list[Any]) -> list[Any]:
    """Each value, and the items of array values (comparisons look inside arrays)."""
    out: list[Any] = []
    for value in values:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _operator(values: list[Any], op: str, arg: Any, options: str) -> bool:
    if op == "$eq":
        return any(_equals_or_contains(v, arg) for v in values)
    if op == "$ne":
        return not any(_equals_or_contains(v, arg) for v in values)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise FilterError(f"{op} needs an array")
        found = any(_equals_or_contains(v, a) for v in values for a in arg)
        return found if op == "$in" else not found
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return any(_compare(v, op, arg) for v in _scalars(values) if _comparable(v, arg))
    if op == "$exists":
        present = any(v is not MISSING for v in values)
        return present == bool(arg)
    if op == "$regex":
        return _regex(values, arg, options)
    if op == "$all":
        if not isinstance(arg, list):
            raise FilterError("$all needs an array")
        return all(any(_equals_or_contains(v, a) for v in values) for a in arg)
    if op == "$size":
        return any(isinstance(v, list) and len(v) == arg for v in values)
    raise FilterError(f"unsupported operator {op}")


def _compare(value: Any, op: str, arg: Any) -> bool:
    if op == "$gt":
        return bool(value > arg)
    if op == "$gte":
        return bool(value >= arg)
    if op == "$lt":
        return bool(value < arg)
    return bool(value <= arg)


def _regex(values: list[Any], pattern: Any, options: str) -> bool:
    if not isinstance(pattern, str):
        raise FilterError("$regex needs a string")
    flags = 0
    for letter, flag in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL), ("x", re.VERBOSE)):
        if letter in options:
            flags |= flag
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise FilterError(f"invalid $regex {pattern!r}: {exc}") from None
    return any(isinstance(v, str) and compiled.search(v) is not None for v in _scalars(values))


def _sort_key(value: Any) -> tuple[int, Any]:
    # MongoDB's order of types: missing/null < numbers < strings < objects < arrays < booleans.
    if value is MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (5, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3 if isinstance(value, dict) else 4, json.dumps(value, sort_keys=True))


def project(doc: Mapping[str, Any], fields: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """Keep (or drop) the named top-level or dotted fields, as a MongoDB projection does."""
    if not fields:
        return dict(doc)
    if isinstance(fields, list):
        include = [name for name in fields if isinstance(name, str)]
        exclude: list[str] = []
    else:
        include = [name for name, on in fields.items() if on]
        exclude = [name for name, on in fields.items() if not on]
    if include and exclude:
        raise FilterError("a projection cannot both include and exclude fields")
    if include:
        out: dict[str, Any] = {}
        for name in include:
            _copy_path(doc, out, name.split("."))
        return out
    kept = json.loads(json.dumps(doc))
    for name in exclude:
        _drop_path(kept, name.split("."))
    return dict(kept)


def _copy_path(src: Mapping[str, Any], dst: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1:
        dst[head] = src[head]
    elif isinstance(src[head], dict):
        _copy_path(src[head], dst.setdefault(head, {}), parts[1:])


def _drop_path(doc: dict[str, Any], parts: list[str]) -> None:
    if len(parts) == 1:
        doc.pop(parts[0], None)
    elif isinstance(doc.get(parts[0]), dict):
        _drop_path(doc[parts[0]], parts[1:])


def apply_query(docs: Iterable[Mapping[str, Any]], query: Query) -> list[dict[str, Any]]:
    """Match, sort (stable, in insertion order otherwise), page and project ``docs``."""
    found = [doc for doc in docs if matches(doc, query.where)]
    for name, descending in reversed(query.order):
        found.sort(key=lambda doc: _sort_key(resolve(doc, name)[0]), reverse=descending)
    end = None if query.limit is None else query.skip + query.limit
    return [project(doc, query.fields) for doc in found[query.skip : end]]


def fullquery_where(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``where`` equivalent of ``GET Datasets/fullquery``'s ``fields`` (the subset this server knows).

    ``text`` searches datasetName, description and keywords (case-insensitive); a list value means "any of"
    (``keywords``: "all of"); ``creationTime: {begin, end}`` is a range; ``mode`` and ``userGroups`` are
    ignored (the backend uses them for its access rules).
    """
    where: list[dict[str, Any]] = []
    for key, value in fields.items():
        if key in ("mode", "userGroups", "metadataKey") or value in (None, "", []):
            continue
        if key == "text":
            pattern = re.escape(str(value))
            where.append(
                {
                    "$or": [
                        {name: {"$regex": pattern, "$options": "i"}}
                        for name in ("datasetName", "description", "keywords")
                    ]
                }
            )
        elif key == "creationTime" and isinstance(value, dict):
            bounds = {"$gte": value["begin"]} if value.get("begin") else {}
            if value.get("end"):
                bounds["$lte"] = value["end"]
            if bounds:
                where.append({key: bounds})
        elif isinstance(value, list):
            where.append({key: {"$all" if key == "keywords" else "$in": value}})
        else:
            where.append({key: value})
    return {"$and": where} if where else {}
