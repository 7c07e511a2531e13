"""The interface every archive backend implements, and the errors a backend raises.

A backend stores ``BundlePlan``s (an htar bundle of many files, or one large file stored as is) and answers
four questions about what it holds: the state of a planned bundle, which bundles a proposal has, what a
bundle contains, and how to get members back. Bundles are immutable: a backend never overwrites one, and
new scans of an archived cycle go to a new part.

Every method is async: the NERSC backend talks to a remote API, and the local one runs its blocking I/O in
a worker thread so the event loop stays free.

Errors follow ``beamflow.common.errors``: ``PermanentError`` when retrying cannot help (an operator must act
first), ``TransientError`` when the world may change (a disk frees up). Paths escaping a root raise
``PathOutsideRoot``; a member missing from the source raises ``SourceMissing``; a member that changed while
it was being archived raises ``SourceChanged`` (all three from ``beamflow.common.errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from beamflow.common.archive_model import BundlePlan, BundleState, ExistingBundle, MemberEntry
from beamflow.common.errors import PermanentError, TransientError


class ArchiveBackend(Protocol):
    """An archive that stores bundle plans once and lists and restores them."""

    async def state(self, plan: BundlePlan) -> BundleState:
        """What the archive holds under ``plan.path``, without changing anything.

        ``absent``: nothing there. ``verified``: the listing holds exactly the planned members with their
        sizes, and the checksums the archive's index records equal the plan's where both are known.
        ``unverified``: something is there but does not match; ``reason`` names what is missing or
        different.
        """
        ...

    async def write(self, plan: BundlePlan, source_root: Path) -> BundleState:
        """Write the bundle from the files under ``source_root``, verify it, and return the verified state.

        Raises ``BundleExists`` if anything is already under the bundle's name (nothing is overwritten),
        ``MemberChanged`` if a member no longer matches the plan, ``ArchiveFull``/``ArchiveWriteFailed``
        if the archive did not take or give back the bytes. Nothing appears under the final name unless it
        verified.
        """
        ...

    async def bundles(self, beamline: str, proposal: str) -> list[ExistingBundle]:
        """The bundles the archive holds for one proposal of one beamline, sorted by name."""
        ...

    async def members(self, bundle_path: str) -> list[MemberEntry]:
        """A bundle's members as the archive lists them; ``bundle_path`` is '<directory>/<name>'."""
        ...

    async def restore(self, bundle_path: str, members: list[str] | None, destination: Path) -> list[Path]:
        """Restore the whole bundle (``members`` None) or the named members into ``destination``.

        Member paths are kept relative to ``destination``; anything that would land outside it is refused
        (``PathOutsideRoot``). An existing file with the same bytes is kept; a different one is never
        overwritten (``RestoreConflict``). Returns the restored files' paths, in bundle order.
        """
        ...


class InvalidPlan(PermanentError):
    """The plan cannot be stored as given (hsi with several members, duplicate or non-canonical names)."""


class BundleExists(PermanentError):
    """Something is already stored under the bundle's name; bundles are written once and never replaced."""


class BundleNotFound(PermanentError):
    """The named bundle is not in the archive."""


class BundleUnverified(PermanentError):
    """A bundle in the archive does not hold what its plan or its own index says (it is never rewritten)."""


class MemberChanged(PermanentError):
    """A member's bytes or size no longer match the verified copy the plan was made from."""


class MemberNotInBundle(PermanentError):
    """A restore named members the bundle does not hold."""


class RestoreConflict(PermanentError):
    """A restore would overwrite an existing, different file at the destination."""


class ArchiveWriteFailed(TransientError):
    """Writing a bundle failed (an I/O error, or the bytes did not read back); nothing was published."""


class ArchiveFull(ArchiveWriteFailed):
    """The archive has no room for the bundle (no space, quota, file size limit); retried later."""
