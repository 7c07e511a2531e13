"""Prune controller for filesystem endpoints: fresh checksum of the copy, checks of the source, unlink."""

from __future__ import annotations

import contextlib
import os

from beamflow.common.checksums import file_checksum
from beamflow.common.endpoints import EndpointConfig, FilesystemEndpoint, resolve_inside
from beamflow.common.errors import PathOutsideRoot, UnsupportedEndpoint
from beamflow.common.events import FileCopy
from beamflow.common.prune import Deleted


def _root(endpoint: EndpointConfig) -> FilesystemEndpoint:
    if not isinstance(endpoint, FilesystemEndpoint):
        raise UnsupportedEndpoint("FilesystemPrune works on filesystem endpoints only")
    return endpoint


class FilesystemPrune:
    def check_copy(
        self, name: str, endpoint: EndpointConfig, files: list[FileCopy], location: str | None = None
    ) -> list[str]:
        root = _root(endpoint).root
        problems: list[str] = []
        for copy in files:
            try:
                path = resolve_inside(root, copy.path, name)
            except PathOutsideRoot as exc:
                problems.append(str(exc))
                continue
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                problems.append(f"{copy.path} is missing on {name}")
                continue
            except OSError as exc:
                problems.append(f"{copy.path} cannot be read on {name}: {exc.strerror}")
                continue
            if size != copy.size:
                problems.append(f"{copy.path} on {name} has {size} bytes, the verified copy had {copy.size}")
                continue
            try:
                digest, _ = file_checksum(path, copy.algorithm)
            except (OSError, ValueError) as exc:
                problems.append(f"{copy.path} on {name} could not be checksummed: {exc}")
                continue
            if digest != copy.checksum:
                problems.append(
                    f"{copy.path} on {name} does not match its verified checksum "
                    f"({copy.algorithm} {digest} != {copy.checksum}): the copy is corrupt"
                )
        return problems

    def check_source(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> list[str]:
        root = _root(endpoint).root
        problems: list[str] = []
        for copy in files:
            try:
                path = resolve_inside(root, copy.path, name)
            except PathOutsideRoot as exc:
                problems.append(str(exc))
                continue
            if (root / copy.path).is_symlink():
                problems.append(f"{copy.path} on {name} is a symlink; beamflow deletes only the files it copied")
                continue
            with contextlib.suppress(FileNotFoundError):  # already gone: nothing left to protect
                size = os.stat(path, follow_symlinks=False).st_size
                if size != copy.size:
                    problems.append(
                        f"{copy.path} on {name} has {size} bytes but the verified copy has {copy.size}: "
                        "it changed after it was copied, so the copy does not protect it"
                    )
        return problems

    def delete(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> Deleted:
        root = _root(endpoint).root
        freed = gone = 0
        deleted: list[str] = []
        for copy in files:
            path = resolve_inside(root, copy.path, name)
            try:
                size = os.stat(path, follow_symlinks=False).st_size
                path.unlink()
                freed += size
            except FileNotFoundError:
                gone += 1
            deleted.append(copy.path)
        return Deleted(files=deleted, freed_bytes=freed, already_gone=gone)
