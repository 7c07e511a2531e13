"""The local SciCat's `filter` logic on plain documents: MongoDB matching, the backend's loopback rewrites
(quirks included), paging, ordering and projection."""

from __future__ import annotations

import json

import pytest
from beamflow.scicat_local.filters import (
    FilterError,
    apply_query,
    fullquery_where,
    loopback_to_mongo,
    matches,
    parse_filter,
    project,
)

DOCS = [
    {
        "pid": "p/1",
        "datasetName": "scan-a",
        "size": 10,
        "keywords": ["saxs", "beamflow"],
        "isPublished": False,
        "scientificMetadata": {"beamflow_scan_id": "a", "energy": {"value": 10, "unit": "keV"}},
    },
    {
        "pid": "p/2",
        "datasetName": "scan-b",
        "size": 30,
        "keywords": ["waxs"],
        "isPublished": True,
        "scientificMetadata": {"beamflow_scan_id": "b", "energy": {"value": 12, "unit": "keV"}},
        "techniques": [{"pid": "t1", "name": "SAXS"}],
    },
    {"pid": "p/3", "datasetName": "Scan-C", "size": 20, "keywords": [], "description": None},
]


def pids(where: dict[str, object]) -> list[str]:
    return [d["pid"] for d in DOCS if matches(d, where)]


def query(filter_: dict[str, object]) -> list[dict[str, object]]:
    return apply_query(DOCS, parse_filter(json.dumps(filter_)))


def test_equality_and_nested_keys() -> None:
    assert pids({"datasetName": "scan-a"}) == ["p/1"]
    assert pids({"scientificMetadata.beamflow_scan_id": "b"}) == ["p/2"]
    assert pids({"scientificMetadata.energy.value": 12}) == ["p/2"]
    assert pids({"datasetName": "scan-a", "size": 30}) == []
    assert pids({}) == ["p/1", "p/2", "p/3"]


def test_equality_with_an_array_means_contains_and_walks_into_arrays_of_objects() -> None:
    assert pids({"keywords": "beamflow"}) == ["p/1"]
    assert pids({"keywords": ["waxs"]}) == ["p/2"]  # a whole-array equality
    assert pids({"techniques.name": "SAXS"}) == ["p/2"]


def test_null_matches_missing_and_null_and_booleans_are_not_numbers() -> None:
    assert pids({"description": None}) == ["p/1", "p/2", "p/3"]
    assert pids({"techniques": None}) == ["p/1", "p/3"]
    assert pids({"isPublished": True}) == ["p/2"]
    assert pids({"isPublished": 1}) == []


def test_a_sub_document_without_operators_is_compared_whole() -> None:
    assert pids({"scientificMetadata.energy": {"value": 10, "unit": "keV"}}) == ["p/1"]
    assert pids({"scientificMetadata.energy": {"value": 10}}) == []


def test_mongo_operators() -> None:
    assert pids({"size": {"$gt": 10}}) == ["p/2", "p/3"]
    assert pids({"size": {"$gte": 10, "$lt": 30}}) == ["p/1", "p/3"]
    assert pids({"datasetName": {"$in": ["scan-a", "Scan-C"]}}) == ["p/1", "p/3"]
    assert pids({"datasetName": {"$nin": ["scan-a"]}}) == ["p/2", "p/3"]
    assert pids({"datasetName": {"$ne": "scan-a"}}) == ["p/2", "p/3"]
    assert pids({"techniques": {"$exists": True}}) == ["p/2"]
    assert pids({"datasetName": {"$regex": "^scan"}}) == ["p/1", "p/2"]
    assert pids({"datasetName": {"$regex": "^scan", "$options": "i"}}) == ["p/1", "p/2", "p/3"]
    assert pids({"keywords": {"$all": ["saxs", "beamflow"]}}) == ["p/1"]
    assert pids({"keywords": {"$size": 0}}) == ["p/3"]
    assert pids({"$or": [{"size": 10}, {"size": 20}]}) == ["p/1", "p/3"]
    assert pids({"$and": [{"size": {"$gt": 5}}, {"keywords": "waxs"}]}) == ["p/2"]
    assert pids({"$nor": [{"size": 10}, {"size": 20}]}) == ["p/2"]


def test_loopback_operators_are_rewritten_as_the_backend_does() -> None:
    assert [d["pid"] for d in query({"where": {"datasetName": {"inq": ["scan-a", "scan-b"]}}})] == ["p/1", "p/2"]
    assert [d["pid"] for d in query({"where": {"datasetName": {"nin": ["scan-a"]}}})] == ["p/2", "p/3"]
    assert [d["pid"] for d in query({"where": {"datasetName": {"like": "^scan"}}})] == ["p/1", "p/2"]
    compact = '{"where":{"or":[{"size":10},{"size":30}]}}'
    assert [d["pid"] for d in apply_query(DOCS, parse_filter(compact))] == ["p/1", "p/2"]


def test_and_or_written_with_a_space_are_not_rewritten_as_on_the_backend() -> None:
    # json.dumps (pyscicat) writes '{"or": [' - the backend's textual rewrite needs '{"or":[' - so `or`
    # stays a field name and nothing matches. `$or` always works.
    spaced = json.dumps({"where": {"or": [{"size": 10}, {"size": 30}]}})
    assert '{"or": [' in spaced
    assert loopback_to_mongo(spaced) == spaced
    assert apply_query(DOCS, parse_filter(spaced)) == []
    assert [d["pid"] for d in query({"where": {"$or": [{"size": 10}, {"size": 30}]}})] == ["p/1", "p/2"]


def test_limits_page_and_order() -> None:
    by_size = query({"limits": {"order": "size:desc"}})
    assert [d["pid"] for d in by_size] == ["p/2", "p/3", "p/1"]
    page = query({"limits": {"skip": 1, "limit": 1, "order": "size:asc"}})
    assert [d["pid"] for d in page] == ["p/3"]
    # An order whose direction is neither asc nor desc is ignored, as parseLimitFilters does.
    assert [d["pid"] for d in query({"limits": {"order": "size:up"}})] == ["p/1", "p/2", "p/3"]
    # Loopback's top-level keys are honoured only when `limits` is absent.
    assert [d["pid"] for d in query({"limit": 1, "order": "size DESC"})] == ["p/2"]
    assert len(query({"limit": 1, "limits": {}})) == 3


def test_default_limit_is_100() -> None:
    many = [{"pid": f"p/{i}"} for i in range(150)]
    assert len(apply_query(many, parse_filter(None))) == 100
    assert len(apply_query(many, parse_filter(json.dumps({"limits": {"limit": 120}})))) == 120


def test_projection_includes_or_excludes_fields() -> None:
    doc = DOCS[1]
    assert project(doc, ["pid", "scientificMetadata.beamflow_scan_id"]) == {
        "pid": "p/2",
        "scientificMetadata": {"beamflow_scan_id": "b"},
    }
    assert project(doc, {"pid": 1, "size": True}) == {"pid": "p/2", "size": 30}
    excluded = project(doc, {"scientificMetadata": 0, "techniques": False})
    assert "scientificMetadata" not in excluded and "techniques" not in excluded and excluded["size"] == 30
    with pytest.raises(FilterError):
        project(doc, {"pid": 1, "size": 0})


def test_fullquery_fields() -> None:
    def fq(fields: dict[str, object]) -> list[str]:
        return pids(fullquery_where(fields))

    assert fq({"text": "SCAN-b"}) == ["p/2"]
    assert fq({"text": "waxs"}) == ["p/2"]
    assert fq({"keywords": ["saxs", "beamflow"]}) == ["p/1"]
    assert fq({"datasetName": ["scan-a", "Scan-C"], "mode": {}}) == ["p/1", "p/3"]
    assert fq({}) == ["p/1", "p/2", "p/3"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"where": []}', "where must be an object"),
        ('{"limits": {"limit": -1}}', "non-negative"),
        ('{"where": {"size": {"$where": "1"}}}', "unsupported operator $where"),
        ('{"where": {"$text": {}}}', "unsupported top-level operator"),
        ('{"where": {"size": {"$gt": 1, "x": 2}}}', "cannot mix"),
        ('{"where": {"datasetName": {"$regex": "("}}}', "invalid $regex"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(raw: str, problem: str) -> None:
    with pytest.raises(FilterError, match=problem.replace("$", r"\$")):
        apply_query(DOCS, parse_filter(raw))
