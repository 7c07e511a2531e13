"""The Globus stand-in driven by the unmodified globus-sdk: real copies and deletions, and Globus's failures."""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import globus_sdk
import pytest
from beamflow.globus_local.auth import ClientCredentials
from beamflow.globus_local.copier import fault_from_os_error
from beamflow.globus_local.storage import Collection
from tests.integration.globus.conftest import Site


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _write(path: Path, data: bytes, *, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _submit_a_dat(site: Site, **options: str) -> str:
    """Submit a transfer of ``/a.dat`` from the site's source to its destination collection; the task id."""
    data = globus_sdk.TransferData(site.source_id, site.destination_id, **options)
    data.add_item("/a.dat", "/a.dat")
    return str(site.transfer.submit_transfer(data)["task_id"])


def _in(seconds: float) -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)).isoformat()


def test_transfer_copies_files_verifies_and_sync_skips_unchanged(site: Site) -> None:
    old = 1_600_000_000.0
    _write(site.source / "scan1" / "frame_0001.h5", os.urandom(300_000), mtime=old)
    _write(site.source / "scan1" / "meta" / "scan.json", b'{"energy": 12.4}', mtime=old)
    _write(site.source / "single.txt", b"one file", mtime=old)
    data = globus_sdk.TransferData(
        site.source_id,
        site.destination_id,
        label="beamflow scan1",
        sync_level="checksum",
        verify_checksum=True,
        preserve_timestamp=True,
    )
    data.add_item("/scan1/", "/raw/scan1/", recursive=True)
    data.add_item("/single.txt", "/raw/single.txt")

    submitted = site.transfer.submit_transfer(data)
    assert submitted["code"] == "Accepted"
    task = site.wait_task(submitted["task_id"])

    assert task["status"] == "SUCCEEDED", task
    assert (task["type"], task["label"], task["nice_status"], task["fatal_error"]) == (
        "TRANSFER",
        "beamflow scan1",
        None,
        None,
    )
    assert (task["files"], task["files_transferred"], task["files_skipped"]) == (3, 3, 0)
    assert task["directories"] == 2
    assert task["bytes_transferred"] == 300_000 + 16 + 8
    assert task["bytes_checksummed"] >= task["bytes_transferred"]
    assert task["completion_time"] is not None
    for relative in ("scan1/frame_0001.h5", "scan1/meta/scan.json", "single.txt"):
        copied = site.destination / "raw" / relative
        assert _md5(copied) == _md5(site.source / relative)
        assert copied.stat().st_mtime == old
    assert not [p for p in site.destination.rglob("*") if p.name.endswith(".globus-part")]
    transfers = list(site.transfer.task_successful_transfers(submitted["task_id"]))
    assert sorted(t["destination_path"] for t in transfers) == [
        "/raw/scan1/frame_0001.h5",
        "/raw/scan1/meta/scan.json",
        "/raw/single.txt",
    ]
    assert all(t["checksum_algorithm"] == "MD5" and t["checksum"] for t in transfers)

    # Same data again with sync_level checksum: nothing is rewritten ...
    inode = (site.destination / "raw" / "single.txt").stat().st_ino
    data.pop("submission_id")
    again = site.wait_task(site.transfer.submit_transfer(data)["task_id"])
    assert (again["status"], again["files_transferred"], again["files_skipped"]) == ("SUCCEEDED", 0, 3)
    assert (site.destination / "raw" / "single.txt").stat().st_ino == inode
    # ... but a changed file is.
    _write(site.source / "single.txt", b"one file, changed")
    data.pop("submission_id")
    third = site.wait_task(site.transfer.submit_transfer(data)["task_id"])
    assert (third["files_transferred"], third["files_skipped"]) == (1, 2)
    assert (site.destination / "raw" / "single.txt").read_bytes() == b"one file, changed"


def test_repeated_submission_id_returns_the_same_task(site: Site) -> None:
    _write(site.source / "a.dat", b"a")
    data = globus_sdk.TransferData(site.source_id, site.destination_id, submission_id=str(uuid.uuid4()))
    data.add_item("/a.dat", "/a.dat")
    first = site.transfer.submit_transfer(data)
    second = site.transfer.submit_transfer(data)
    assert (first.http_status, first["code"]) == (202, "Accepted")
    assert (second.http_status, second["code"]) == (200, "Duplicate")
    assert second["task_id"] == first["task_id"]
    site.wait_task(first["task_id"])
    assert len(site.api.engine.tasks()) == 1


def test_missing_source_fails_with_file_not_found(site: Site) -> None:
    data = globus_sdk.TransferData(site.source_id, site.destination_id)
    data.add_item("/no/such/file.h5", "/raw/file.h5")
    task_id = site.transfer.submit_transfer(data)["task_id"]
    task = site.wait_task(task_id)
    assert task["status"] == "FAILED"
    assert task["fatal_error"]["code"] == "FILE_NOT_FOUND"
    assert task["nice_status"] is None and task["is_ok"] is None
    failure = next(event for event in site.events(task_id) if event["code"] == "FILE_NOT_FOUND")
    assert failure["is_error"] is True
    assert "/no/such/file.h5" in failure["details"]
    assert not (site.destination / "raw").exists()


def test_skip_source_errors_skips_the_missing_file_and_succeeds(site: Site) -> None:
    _write(site.source / "present.dat", b"here")
    data = globus_sdk.TransferData(site.source_id, site.destination_id, skip_source_errors=True)
    data.add_item("/missing.dat", "/missing.dat")
    data.add_item("/present.dat", "/present.dat")
    task_id = site.transfer.submit_transfer(data)["task_id"]
    task = site.wait_task(task_id)
    assert task["status"] == "SUCCEEDED"
    assert task["subtasks_skipped_errors"] == 1
    assert (site.destination / "present.dat").read_bytes() == b"here"
    skipped = list(site.transfer.task_skipped_errors(task_id))
    assert [(s["error_code"], s["source_path"]) for s in skipped] == [("FILE_NOT_FOUND", "/missing.dat")]
    assert "SKIPPED_ERRORS" in {event["code"] for event in site.events(task_id)}


def test_read_only_destination_fails_with_permission_denied(site: Site) -> None:
    archive_id = str(uuid.uuid4())
    archive = site.globus.add_collection(archive_id, site.destination.parent / "archive", writable=False)
    _write(site.source / "a.dat", b"data")
    data = globus_sdk.TransferData(site.source_id, archive_id)
    data.add_item("/a.dat", "/in/a.dat")
    task_id = site.transfer.submit_transfer(data)["task_id"]
    task = site.wait_task(task_id)
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "PERMISSION_DENIED")
    assert task["destination_endpoint_id"] == archive_id
    assert any(e["code"] == "PERMISSION_DENIED" and e["is_error"] for e in site.events(task_id))
    assert list(archive.root.iterdir()) == []


def test_paths_leaving_the_collection_are_refused(site: Site) -> None:
    _write(site.source / "a.dat", b"data")
    data = globus_sdk.TransferData(site.source_id, site.destination_id)
    data.add_item("/a.dat", "/../escaped.dat")
    task = site.wait_task(site.transfer.submit_transfer(data)["task_id"])
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "PERMISSION_DENIED")
    assert not (site.destination.parent / "escaped.dat").exists()
    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        site.transfer.operation_ls(site.source_id, path="/../")
    assert (refused.value.http_status, refused.value.code) == (403, "EndpointPermissionDenied")


def test_os_permission_errors_are_reported_as_permission_denied(tmp_path: Path) -> None:
    # As root (the CI runner) chmod cannot make the OS refuse, so the mapping itself is checked.
    collection = Collection(str(uuid.uuid4()), tmp_path)
    refused = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    fault = fault_from_os_error(refused, collection, operation="transfer", command="STOR", path="/x", source_side=False)
    assert (fault.code, fault.fatal, fault.skippable) == ("PERMISSION_DENIED", True, False)
    busy = OSError(errno.EIO, "Input/output error")
    retried = fault_from_os_error(busy, collection, operation="transfer", command="RETR", path="/x", source_side=True)
    assert (retried.code, retried.fatal) == ("ENDPOINT_ERROR", False)


def test_stalled_task_stays_active_then_fails_at_its_deadline(site: Site) -> None:
    _write(site.source / "a.dat", b"data")
    site.api.stall(site.source_id)
    site.transfer.get_submission_id()  # log in first: the deadline below is counted from now
    task_id = _submit_a_dat(site, deadline=_in(1.5))

    stalled = site.wait_nice_status(task_id, "CONNECT_FAILED")
    assert (stalled["status"], stalled["is_ok"], stalled["completion_time"]) == ("ACTIVE", False, None)
    task = site.wait_task(task_id)
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "EXPIRED")
    assert task["faults"] >= 1
    codes = [event["code"] for event in site.events(task_id)]
    assert codes[0] == "EXPIRED"
    assert "CONNECT_FAILED" in codes
    assert not (site.destination / "a.dat").exists()


def test_unstall_lets_a_stalled_task_finish(site: Site) -> None:
    _write(site.source / "a.dat", b"data")
    site.api.stall(site.destination_id, inactive=True)
    task_id = _submit_a_dat(site)
    stalled = site.wait_task(task_id, frozenset({"INACTIVE"}))
    assert stalled["nice_status"] == "CONNECT_FAILED"
    site.api.unstall()
    assert site.wait_task(task_id)["status"] == "SUCCEEDED"
    assert (site.destination / "a.dat").read_bytes() == b"data"


def test_cancel_fails_the_task_and_copies_nothing_more(site: Site) -> None:
    _write(site.source / "a.dat", b"data")
    site.api.stall(site.source_id)
    task_id = _submit_a_dat(site)
    site.wait_nice_status(task_id, "CONNECT_FAILED")

    answer = site.transfer.cancel_task(task_id)
    assert (answer["DATA_TYPE"], answer["code"]) == ("result", "Canceled")
    task = site.transfer.get_task(task_id)
    assert (task["status"], task["fatal_error"]["code"], task["nice_status"]) == ("FAILED", "CANCELED", None)
    site.api.unstall()
    assert site.api.wait_idle(5)
    assert not (site.destination / "a.dat").exists()
    assert site.transfer.cancel_task(task_id)["code"] == "TaskComplete"
    assert site.transfer.get_task(task_id)["fatal_error"]["code"] == "CANCELED"


def test_delete_really_deletes_and_honours_ignore_missing(site: Site) -> None:
    _write(site.destination / "old" / "run1" / "a.h5", b"a")
    _write(site.destination / "old" / "b.h5", b"b")
    _write(site.destination / "keep.h5", b"k")
    data = globus_sdk.DeleteData(site.destination_id, recursive=True, label="prune old")
    data.add_item("/old/")
    task = site.wait_task(site.transfer.submit_delete(data)["task_id"])
    assert (task["status"], task["type"], task["files"], task["directories"]) == ("SUCCEEDED", "DELETE", 2, 2)
    assert not (site.destination / "old").exists()
    assert (site.destination / "keep.h5").exists()

    missing = globus_sdk.DeleteData(site.destination_id, ignore_missing=True)
    missing.add_item("/old/")
    assert site.wait_task(site.transfer.submit_delete(missing)["task_id"])["status"] == "SUCCEEDED"
    strict = globus_sdk.DeleteData(site.destination_id)
    strict.add_item("/old/")
    failed = site.wait_task(site.transfer.submit_delete(strict)["task_id"])
    assert (failed["status"], failed["fatal_error"]["code"]) == ("FAILED", "FILE_NOT_FOUND")


def test_filter_rules_and_delete_destination_extra_shape_a_recursive_copy(site: Site) -> None:
    _write(site.source / "run" / "a.h5", b"a")
    _write(site.source / "run" / "scratch.log", b"log")
    _write(site.source / "run" / "sub" / "b.h5", b"b")
    _write(site.destination / "run" / "stale.h5", b"old")
    _write(site.destination / "run" / "gone" / "c.h5", b"old")
    data = globus_sdk.TransferData(site.source_id, site.destination_id, delete_destination_extra=True)
    data.add_item("/run", "/run", recursive=True)
    data.add_filter_rule("*.log", method="exclude", type="file")
    task = site.wait_task(site.transfer.submit_transfer(data)["task_id"])
    assert (task["status"], task["files_transferred"]) == ("SUCCEEDED", 2)
    copied = sorted(str(p.relative_to(site.destination)) for p in site.destination.rglob("*"))
    assert copied == ["run", "run/a.h5", "run/sub", "run/sub/b.h5"]


def test_delete_interprets_globs(site: Site) -> None:
    for name in ("a1.h5", "a2.h5", "b.h5"):
        _write(site.destination / name, b"x")
    data = globus_sdk.DeleteData(site.destination_id, interpret_globs=True)
    data.add_item("/a*.h5")
    task = site.wait_task(site.transfer.submit_delete(data)["task_id"])
    assert (task["status"], task["files"]) == ("SUCCEEDED", 2)
    assert [p.name for p in site.destination.iterdir()] == ["b.h5"]


def test_delete_of_a_folder_needs_recursive(site: Site) -> None:
    _write(site.destination / "run" / "a.h5", b"a")
    data = globus_sdk.DeleteData(site.destination_id)
    data.add_item("/run")
    task = site.wait_task(site.transfer.submit_delete(data)["task_id"])
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "IS_A_DIRECTORY")
    assert (site.destination / "run" / "a.h5").exists()


def test_operation_ls_lists_sizes_and_refuses_what_it_cannot_list(site: Site) -> None:
    _write(site.source / "run" / "big.h5", b"x" * 1234)
    _write(site.source / "run" / ".hidden", b"h")
    (site.source / "run" / "sub").mkdir()
    listing = site.transfer.operation_ls(site.source_id, path="/run/")
    assert listing["DATA_TYPE"] == "file_list" and listing["path"] == "/run/"
    entries = {entry["name"]: (entry["type"], entry["size"]) for entry in listing}
    assert entries["big.h5"] == ("file", 1234)
    assert entries["sub"][0] == "dir"
    assert ".hidden" in entries
    visible = site.transfer.operation_ls(site.source_id, path="/run/", show_hidden=False, filter="type:file")
    assert [entry["name"] for entry in visible] == ["big.h5"]

    with pytest.raises(globus_sdk.TransferAPIError) as missing:
        site.transfer.operation_ls(site.source_id, path="/nowhere/")
    assert (missing.value.http_status, missing.value.code) == (404, "ClientError.NotFound")
    with pytest.raises(globus_sdk.TransferAPIError) as not_dir:
        site.transfer.operation_ls(site.source_id, path="/run/big.h5")
    assert (not_dir.value.http_status, not_dir.value.code) == (502, "ExternalError.DirListingFailed.NotDirectory")
    with pytest.raises(globus_sdk.TransferAPIError) as unknown:
        site.transfer.operation_ls(str(uuid.uuid4()), path="/")
    assert (unknown.value.http_status, unknown.value.code) == (404, "EndpointNotFound")


def test_stat_and_mkdir(site: Site) -> None:
    _write(site.source / "a.dat", b"12345")
    assert site.transfer.operation_stat(site.source_id, "/a.dat")["size"] == 5
    with pytest.raises(globus_sdk.TransferAPIError) as missing:
        site.transfer.operation_stat(site.source_id, "/b.dat")
    assert (missing.value.http_status, missing.value.code) == (404, "NotFound")
    assert site.transfer.operation_mkdir(site.destination_id, "/new")["code"] == "DirectoryCreated"
    assert (site.destination / "new").is_dir()
    with pytest.raises(globus_sdk.TransferAPIError) as exists:
        site.transfer.operation_mkdir(site.destination_id, "/new")
    assert exists.value.code == "ExternalError.MkdirFailed.Exists"


def test_invalid_documents_are_refused_as_the_transfer_api_does(site: Site) -> None:
    empty = globus_sdk.TransferData(site.source_id, site.destination_id)
    with pytest.raises(globus_sdk.TransferAPIError) as no_items:
        site.transfer.submit_transfer(empty)
    assert (no_items.value.http_status, no_items.value.code) == (400, "ClientError.BadRequest.NoTransferItems")

    unknown = globus_sdk.TransferData(site.source_id, str(uuid.uuid4()))
    unknown.add_item("/a", "/a")
    with pytest.raises(globus_sdk.TransferAPIError) as not_found:
        site.transfer.submit_transfer(unknown)
    assert (not_found.value.http_status, not_found.value.code) == (404, "EndpointNotFound")

    bad_level = globus_sdk.TransferData(site.source_id, site.destination_id, sync_level=7)
    bad_level.add_item("/a", "/a")
    late = globus_sdk.TransferData(site.source_id, site.destination_id, deadline=_in(-60))
    late.add_item("/a", "/a")
    relative = globus_sdk.TransferData(site.source_id, site.destination_id)
    relative.add_item("a", "/a")
    for document in (bad_level, late, relative):
        with pytest.raises(globus_sdk.TransferAPIError) as refused:
            site.transfer.submit_transfer(document)
        assert (refused.value.http_status, refused.value.code) == (400, "ClientError.BadRequest")
        assert refused.value.request_id
    assert site.api.engine.tasks() == []


def test_wrong_client_secret_is_an_auth_api_error(site: Site) -> None:
    wrong = ClientCredentials(site.globus.client_credentials.client_id, "not-the-secret")
    client = site.client(credentials=wrong)
    with pytest.raises(globus_sdk.AuthAPIError) as refused:
        client.get_submission_id()
    assert refused.value.http_status == 401
    assert refused.value.raw_json is not None and refused.value.raw_json["error"] == "invalid_client"
    assert ("POST", "/v2/oauth2/token", 401) in site.api.calls


def test_expired_token_gets_401_then_a_new_token(site: Site) -> None:
    def token_calls() -> int:
        return sum(1 for method, path, _ in site.api.calls if path == "/v2/oauth2/token")

    site.transfer.get_submission_id()
    assert token_calls() == 1
    site.api.expire_tokens()
    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        site.transfer.get_submission_id()
    assert (refused.value.http_status, refused.value.code) == (401, "AuthenticationFailed")
    # The SDK's authorizer dropped the token on the 401: the next call fetches a new one.
    assert site.transfer.get_submission_id()["value"]
    assert token_calls() == 2

    retrying = site.client(retries=1)
    retrying.get_submission_id()
    site.api.expire_tokens()
    assert retrying.get_submission_id()["value"]
    assert token_calls() == 4


def test_transfer_endpoints_want_a_bearer_token(site: Site) -> None:
    request = urllib.request.Request(site.globus.transfer_url + "v0.10/submission_id")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(refused.value.read())
    assert refused.value.code == 401
    assert body["code"] == "AuthenticationFailed" and body["request_id"]


def test_task_list_and_event_list_pages(site: Site) -> None:
    _write(site.source / "a.dat", b"a")
    ids = []
    for _ in range(3):
        ids.append(_submit_a_dat(site))
    assert site.api.wait_idle(5)
    listed = site.transfer.task_list(limit=2, filter="status:SUCCEEDED")
    assert (listed["total"], len(listed["DATA"])) == (3, 2)
    assert {task["task_id"] for task in site.transfer.task_list(limit=10)} == set(ids)
    events = site.transfer.task_event_list(ids[0], limit=1)
    assert (events["total"], events["length"], events["DATA"][0]["code"]) == (2, 1, "SUCCEEDED")


def test_tasks_go_on_while_the_api_is_unreachable(site: Site) -> None:
    _write(site.source / "a.dat", b"data")
    site.api.stall(site.source_id)
    task_id = _submit_a_dat(site)
    site.globus.stop()
    with pytest.raises(globus_sdk.GlobusConnectionError):
        site.transfer.get_task(task_id)
    site.api.unstall()
    assert site.api.wait_idle(5)
    site.globus.start()
    assert site.transfer.get_task(task_id)["status"] == "SUCCEEDED"
    assert (site.destination / "a.dat").read_bytes() == b"data"


def test_command_line_serves_until_sigterm(tmp_path: Path) -> None:
    collection_id = str(uuid.uuid4())
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beamflow.globus_local",
            "--state",
            str(tmp_path / "state"),
            "--collection",
            f"{collection_id}={tmp_path / 'data'}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(4)]
        assert lines[1].startswith("local Globus listening on http://127.0.0.1:")
        assert any(line.startswith("GLOBUS_SDK_SERVICE_URL_TRANSFER=") for line in lines)
        credentials = json.loads((tmp_path / "state" / "client.json").read_text())
        assert uuid.UUID(credentials["client_id"]) and credentials["client_secret"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
