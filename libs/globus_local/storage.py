"""Collections of the Globus stand-in: a collection id bound to a local folder, and how Globus paths map onto it.

A Globus path ``/a/b`` on a collection is the local ``<root>/a/b``; ``/~/`` is the root too (a mapped collection's
home). Paths must be absolute. A path that leaves the root -- through ``..`` or a symlink pointing outside -- is
refused as a collection with path restrictions refuses it ("Path not allowed"): ``PathNotAllowed``, which the
API answers 403 ``EndpointPermissionDenied`` and tasks report as ``PERMISSION_DENIED``. ``file_document`` is the
Transfer API's ``file`` document (``name``, ``type``, ``size``, ``last_modified``, ``permissions``, ...).
"""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beamflow.globus_local.wire import event_time


class InvalidPath(ValueError):
    """Not a path the Transfer API accepts (relative, or with characters Globus refuses)."""


class PathNotAllowed(PermissionError):
    """The path is outside what the collection exposes."""


def normalize_collection_id(collection_id: uuid.UUID | str) -> str:
    """The canonical (lower-case, hyphenated) form of a collection id; ``ValueError`` when not a UUID."""
    return str(uuid.UUID(str(collection_id)))


def path_parts(path: str) -> list[str]:
    """The components of an absolute Globus path after ``.``/``..`` are applied; ``PathNotAllowed`` above ``/``."""
    if not isinstance(path, str) or not path:
        raise InvalidPath("a path must be a non-empty string")
    if "\r\n" in path or "\x00" in path:
        raise InvalidPath(f"invalid characters in path {path!r}")
    if path == "~" or path.startswith("~/"):
        path = "/" + path
    if not path.startswith("/"):
        raise InvalidPath(f"path {path!r} is not absolute")
    parts: list[str] = []
    for index, part in enumerate(path.split("/")):
        if part in ("", "."):
            continue
        if part == "~" and index == 1:
            continue
        if part == "..":
            if not parts:
                raise PathNotAllowed(f"path {path!r} leaves the collection")
            parts.pop()
            continue
        parts.append(part)
    return parts


def join_path(folder: str, name: str) -> str:
    """A Globus path inside a Globus folder path."""
    return folder.rstrip("/") + "/" + name


def globus_path(parts: list[str], *, directory: bool = False) -> str:
    text = "/" + "/".join(parts)
    return text + "/" if directory and parts else text


@dataclass(frozen=True)
class Collection:
    """A collection: ``id`` (lower-case UUID), the local folder it exposes, and whether it accepts writes."""

    id: str
    root: Path
    writable: bool = True
    display_name: str = ""

    @property
    def name(self) -> str:
        return self.display_name or f"local collection {self.root.name or self.root}"

    def local_path(self, path: str) -> Path:
        """The local file behind a Globus path; ``InvalidPath``/``PathNotAllowed`` when it has none."""
        target = self.root.joinpath(*path_parts(path))
        # A symlink may still lead out of the root; a real collection's path restrictions refuse that too.
        real_root = os.path.realpath(self.root)
        real_target = os.path.realpath(target)
        if real_target != real_root and not real_target.startswith(real_root.rstrip(os.sep) + os.sep):
            raise PathNotAllowed(f"path {path!r} leaves the collection")
        return target

    def globus_path_of(self, local: Path) -> str:
        relative = local.relative_to(self.root)
        return globus_path(list(relative.parts))


def _owner(info: os.stat_result) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return user, group


def file_type(info: os.stat_result) -> str:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISCHR(mode):
        return "chr"
    if stat.S_ISBLK(mode):
        return "blk"
    if stat.S_ISFIFO(mode):
        return "pipe"
    return "other"


def file_document(path: Path, name: str | None = None) -> dict[str, Any]:
    """The Transfer API ``file`` document of a local file or folder (symlinks are described by their target)."""
    link = path.lstat()
    link_target: str | None = None
    try:
        info = path.stat()
    except OSError:
        info = None
    doc_type = "invalid_symlink" if info is None else file_type(info)
    shown = info or link
    if stat.S_ISLNK(link.st_mode):
        link_target = str(path.readlink())
    user, group = _owner(shown)
    modified = datetime.datetime.fromtimestamp(shown.st_mtime, datetime.UTC)
    document: dict[str, Any] = {
        "DATA_TYPE": "file",
        "name": name if name is not None else path.name,
        "type": doc_type,
        "link_target": link_target,
        "size": shown.st_size,
        "last_modified": event_time(modified),
        "permissions": f"{stat.S_IMODE(shown.st_mode):04o}",
        "user": user,
        "group": group,
        "link_size": None,
        "link_user": None,
        "link_group": None,
        "link_last_modified": None,
    }
    if link_target is not None:
        link_user, link_group = _owner(link)
        document.update(
            link_size=link.st_size,
            link_user=link_user,
            link_group=link_group,
            link_last_modified=event_time(datetime.datetime.fromtimestamp(link.st_mtime, datetime.UTC)),
        )
    return document
