"""Prune controller for Globus endpoints: a fresh listing for the checks, and a Globus delete task.

Globus cannot hand back a file's checksum in a listing, so the fresh look at a copy on a Globus endpoint is
``operation_ls`` of each folder (one request per folder): every file there, with the verified copy's size.
Globus verified the checksum when it wrote the copy. Deleting on a Globus endpoint is a ``DeleteData`` task
(missing files are ignored: already gone counts as deleted), followed to its end; a delete that does not
succeed is refused, so the hold stays and the pruner tries again.

The calls block (the pruner runs them in a worker thread), so the task is followed with ``time.sleep``.
"""

from __future__ import annotations

import posixpath
import time
from collections import defaultdict
from typing import Any, Final

from beamflow.common.endpoints import EndpointConfig, GlobusEndpoint, check_relative
from beamflow.common.errors import BeamflowError, PathOutsideRoot, PruneRefused, UnsupportedEndpoint
from beamflow.common.events import FileCopy
from beamflow.common.globus_session import globus_errors, transfer_client
from beamflow.common.prune import Deleted

FIRST_POLL_SECONDS: Final = 0.25


def _globus(endpoint: EndpointConfig) -> GlobusEndpoint:
    if not isinstance(endpoint, GlobusEndpoint):
        raise UnsupportedEndpoint("GlobusPrune works on Globus endpoints only")
    return endpoint


class GlobusPrune:
    def _listed(self, name: str, endpoint: GlobusEndpoint, files: list[FileCopy]) -> tuple[dict[str, int], list[str]]:
        """Sizes of the files Globus lists now, by relative path, and the problems met on the way."""
        problems: list[str] = []
        by_folder: dict[str, list[FileCopy]] = defaultdict(list)
        for copy in files:
            try:
                check_relative(copy.path)
            except PathOutsideRoot as exc:
                problems.append(str(exc))
                continue
            by_folder[posixpath.dirname(copy.path)].append(copy)
        client = transfer_client(endpoint)
        sizes: dict[str, int] = {}
        for folder, copies in sorted(by_folder.items()):
            path = posixpath.join(endpoint.root, folder) if folder else endpoint.root
            try:
                with globus_errors(f"listing {path} on {name}", name):
                    listing = client.operation_ls(endpoint.collection_id, path=path)
            except BeamflowError as exc:
                if "ClientError.NotFound" in str(exc):
                    continue  # the folder is gone: its files are reported missing below
                problems.append(str(exc))
                continue
            names = {e["name"]: int(e.get("size") or 0) for e in listing if e.get("type") == "file"}
            for copy in copies:
                base = posixpath.basename(copy.path)
                if base in names:
                    sizes[copy.path] = names[base]
        return sizes, problems

    def check_copy(
        self, name: str, endpoint: EndpointConfig, files: list[FileCopy], location: str | None = None
    ) -> list[str]:
        sizes, problems = self._listed(name, _globus(endpoint), files)
        for copy in files:
            if copy.path not in sizes:
                problems.append(f"{copy.path} is missing on {name}")
            elif sizes[copy.path] != copy.size:
                problems.append(
                    f"{copy.path} on {name} has {sizes[copy.path]} bytes, the verified copy had {copy.size}"
                )
        return problems

    def check_source(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> list[str]:
        sizes, problems = self._listed(name, _globus(endpoint), files)
        for copy in files:
            if copy.path in sizes and sizes[copy.path] != copy.size:
                problems.append(
                    f"{copy.path} on {name} has {sizes[copy.path]} bytes but the verified copy has {copy.size}: "
                    "it changed after it was copied, so the copy does not protect it"
                )
        return problems

    def delete(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> Deleted:
        import globus_sdk

        globus = _globus(endpoint)
        for copy in files:
            check_relative(copy.path)
        client = transfer_client(globus)
        data = globus_sdk.DeleteData(globus.collection_id, label=f"beamflow prune on {name}"[:128], ignore_missing=True)
        for copy in files:
            data.add_item(posixpath.join(globus.root, copy.path))
        what = f"deleting {len(files)} file(s) on {name}"
        with globus_errors(what, name):
            task_id = str(client.submit_delete(data)["task_id"])
        document = self._wait(client, globus, name, task_id, what)
        if document.get("status") != "SUCCEEDED":
            fatal = document.get("fatal_error") or {}
            raise PruneRefused(
                f"{what}: Globus delete task {task_id} ended {document.get('status')} "
                f"({fatal.get('code')}: {fatal.get('description')}); the hold stays and the prune is retried"
            )
        return Deleted(files=[c.path for c in files], freed_bytes=sum(c.size for c in files), already_gone=0)

    @staticmethod
    def _wait(client: Any, endpoint: GlobusEndpoint, name: str, task_id: str, what: str) -> dict[str, Any]:
        wait = FIRST_POLL_SECONDS
        give_up = time.monotonic() + endpoint.deadline.total_seconds()
        while True:
            with globus_errors(what, name):
                document: dict[str, Any] = dict(client.get_task(task_id).data)
            if document.get("status") in ("SUCCEEDED", "FAILED") or time.monotonic() > give_up:
                return document
            time.sleep(wait)
            wait = min(wait * 2, endpoint.poll_interval.total_seconds())
