"""The archiver's handlers: plan bundles for verified copies, write and verify them, then say so.

``scan.moved`` at a beamline's archive source archives that scan at once when the policy is ``per_scan``;
``archive.request.<beamline>`` (``beamflow archive PROPOSAL``) archives every verified copy the ledger
knows that no bundle holds yet. Either way: the planner decides the bundles (cycles, parts, limits), the
backend writes each one that is absent and verifies it by reading its listing back, an existing bundle that
verifies is left alone, one that does not is reported and never overwritten; then each scan gets a
``scan.archived`` with its members, and the holds the archive now makes possible are placed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from beamflow.archiver.planning import cycle_bounds, cycle_of, part_of, plan_archive
from beamflow.common import holds
from beamflow.common.archive_backend import ArchiveBackend, BundleExists, BundleUnverified
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.archive_hpss import HpssArchive
from beamflow.common.archive_model import BundlePlan, ExistingBundle, MemberFile
from beamflow.common.archive_tar import LocalTarArchive
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import FilesystemEndpoint, HpssEndpoint, TarArchiveEndpoint, resolve_inside
from beamflow.common.errors import PermanentError, SourceMissing, UnknownBeamline, UnsupportedEndpoint
from beamflow.common.events import ArchiveRequested, ArchiveScheduled, FileCopy, ScanArchived, ScanMoved
from beamflow.common.ledger import Ledger
from beamflow.common.service import Context


class NoProposal(PermanentError):
    """A scan's path names no proposal and the beamline has no default: it cannot be put in a bundle."""


def backend_for(config: BeamflowConfig, policy: ArchivePolicy) -> ArchiveBackend:
    endpoint = config.endpoints[policy.endpoint]
    if isinstance(endpoint, HpssEndpoint):
        source = config.endpoints[policy.source]
        return HpssArchive(endpoint, policy.endpoint, str(source.root))
    assert isinstance(endpoint, TarArchiveEndpoint)  # the config's cross-check guarantees it
    return LocalTarArchive(endpoint.root, policy.endpoint)


class Archiver:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config
        self._ledger: Ledger | None = None

    def _policy(self, beamline: str) -> ArchivePolicy | None:
        bl = self.config.beamlines.get(beamline)
        if bl is None:
            raise UnknownBeamline(f"beamline {beamline!r} is not in this archiver's configuration")
        return bl.archive

    async def ledger(self, ctx: Context) -> Ledger:
        if self._ledger is None:
            self._ledger = await Ledger.open(ctx.js)
        return self._ledger

    # -- per scan -------------------------------------------------------------------------------------

    async def on_moved(self, ctx: Context, event: ScanMoved) -> None:
        policy = self._policy(event.beamline)
        if policy is None or event.destination_endpoint != policy.source or policy.when == "on_demand":
            return
        if self.config.beamlines[event.beamline].is_flight_check(event.scan_path):
            return  # a flight check's test scan: removed again, never archived
        if policy.when == "end_of_cycle":
            await self._schedule_cycle_end(ctx, event, policy)
            return
        if event.export_controlled and self.config.endpoints[policy.endpoint].leaves_facility:
            ctx.log.info("export-controlled: not archived outside the facility")
            return
        proposal = self._proposal(policy, event.scan_path or event.files[0].path, event.scan_id)
        members = await self._members(ctx, policy, event.scan_id, event.files)
        await self._archive(ctx, event.beamline, policy, proposal, members)

    async def _schedule_cycle_end(self, ctx: Context, event: ScanMoved, policy: ArchivePolicy) -> None:
        """Make sure the archive of this scan's cycle is scheduled (a message schedule: no cron, no timer)."""
        members = await self._members(ctx, policy, event.scan_id, event.files)
        for cycle in sorted({cycle_of(m.mtime) for m in members}, key=lambda c: (c.year, c.number)):
            _, ends = cycle_bounds(cycle)
            schedule = ArchiveScheduled(
                beamline=event.beamline,
                cycle=cycle.label,
                due=ends + policy.after_cycle,
                request=ArchiveRequested(beamline=event.beamline, cycle=cycle.label, requested_by="end of cycle"),
            )
            await ctx.publish(schedule)
            ctx.log.info(
                "end-of-cycle archive scheduled", extra={"cycle": cycle.label, "due": schedule.due.isoformat()}
            )

    # -- on request -------------------------------------------------------------------------------------

    async def on_request(self, ctx: Context, event: ArchiveRequested) -> None:
        policy = self._policy(event.beamline)
        if policy is None:
            raise PermanentError(f"beamline {event.beamline} has no archive policy (beamlines.*.archive)")
        by_proposal: dict[str, list[MemberFile]] = defaultdict(list)
        ledger = await self.ledger(ctx)
        for record in await ledger.all(beamline=event.beamline):
            copy = record.copies.get(policy.source)
            if copy is None or policy.endpoint in record.copies:
                continue  # not copied to the archive's source yet, or already archived
            if self.config.beamlines[event.beamline].is_flight_check(record.scan_path):
                continue
            proposal = self._proposal(policy, record.scan_path or copy.files[0].path, record.scan_id)
            if event.proposal is not None and proposal != event.proposal:
                continue
            members = await self._members(ctx, policy, record.scan_id, copy.files)
            if event.cycle is not None and any(cycle_of(m.mtime).label != event.cycle for m in members):
                continue
            by_proposal[proposal] += members
        if not by_proposal:
            ctx.log.info("nothing to archive", extra={"proposal": event.proposal, "cycle": event.cycle})
        for proposal, members in sorted(by_proposal.items()):
            await self._archive(ctx, event.beamline, policy, proposal, members)

    # -- shared ---------------------------------------------------------------------------------------

    def _proposal(self, policy: ArchivePolicy, scan_path: str, scan_id: str) -> str:
        proposal = policy.proposal_of(scan_path)
        if proposal is None:
            raise NoProposal(
                f"scan {scan_id} ({scan_path}) matches no proposal with {policy.proposal_pattern!r} and the "
                "beamline sets no archive.default_proposal; set one (or fix the pattern) and replay"
            )
        return proposal

    async def _members(
        self, ctx: Context, policy: ArchivePolicy, scan_id: str, files: list[FileCopy]
    ) -> list[MemberFile]:
        """The scan's files as archive members. Their mtimes (which decide the beam cycle) come from the
        ledger (as detected), or from the source copy when it is a filesystem here."""
        record = await (await self.ledger(ctx)).get(scan_id)
        detected = {f.path: f.mtime for f in record.files} if record is not None else {}
        source = self.config.endpoints[policy.source]
        members = []
        for copy in files:
            mtime = detected.get(copy.path)
            if mtime is None and isinstance(source, FilesystemEndpoint):
                path = resolve_inside(source.root, copy.path, policy.source)
                try:
                    mtime = os.stat(path).st_mtime
                except FileNotFoundError:
                    raise SourceMissing(
                        f"{copy.path} of scan {scan_id} is no longer on {policy.source}; it cannot be archived "
                        "from there (restore it, or archive from another copy) and replay"
                    ) from None
            if mtime is None:
                raise PermanentError(f"no modification time known for {copy.path} of scan {scan_id}")
            members.append(
                MemberFile(path=copy.path, size=copy.size, mtime=mtime, scan_id=scan_id, checksum=copy.checksum)
            )
        return members

    async def _archive(
        self, ctx: Context, beamline: str, policy: ArchivePolicy, proposal: str, members: list[MemberFile]
    ) -> None:
        backend = backend_for(self.config, policy)
        existing = await backend.bundles(beamline, proposal)
        if isinstance(backend, HpssArchive):
            # A file stored alone on HPSS lists without its source path, and without `listing_dir` nothing
            # lists at all: what the ledger knows fills in.
            existing = merge_bundles(existing, await self._known_bundles(ctx, beamline, policy, proposal))
        plans = self._plan(beamline, policy, proposal, members, existing)
        await self._existing_verify(backend, policy, plans, existing, proposal)
        source_root = Path(str(self.config.endpoints[policy.source].root))
        done: list[BundlePlan] = []
        while plans:
            plan = plans.pop(0)
            state = await backend.state(plan)
            if state.state == "unverified":
                if not isinstance(backend, HpssArchive) or any(b.name == plan.name for b in existing):
                    raise BundleUnverified(
                        f"{plan.path} already exists on {policy.endpoint} but does not verify ({state.reason}); "
                        "it was not touched. Inspect it with `beamflow archive ls` before anything else"
                    )
                # HPSS cannot be listed, and the ledger may not have folded a bundle written moments ago:
                # a name that turns out taken is immutable, so the rest is planned again after it.
                ctx.log.warning(
                    "bundle name already taken on the archive; planning after it", extra={"bundle": plan.path}
                )
                existing.append(ExistingBundle(directory=plan.directory, name=plan.name, kind=plan.kind, members=[]))
                rest = [m for p in [plan, *plans] for m in p.members]
                plans = self._plan(beamline, policy, proposal, rest, existing)
                continue
            if state.state == "absent":
                try:
                    await backend.write(plan, source_root)
                except BundleExists:
                    # Written by an earlier attempt whose answer was lost (a lost job, a crash): keep it if it
                    # verifies, report it if not; never write it again.
                    again = await backend.state(plan)
                    if again.state != "verified":
                        raise
                ctx.log.info("bundle written and verified", extra={"bundle": plan.path, "members": len(plan.members)})
            done.append(plan)
        planned = {m.path for plan in done for m in plan.members}
        archived = list(done)
        # Members already in an existing bundle (a re-run) are announced from that bundle.
        for bundle in existing:
            mine = [m for m in members if m.path in bundle.members and m.path not in planned]
            if mine:
                archived.append(
                    BundlePlan(
                        beamline=beamline,
                        proposal=proposal,
                        cycle=cycle_of(mine[0].mtime),
                        directory=bundle.directory,
                        name=bundle.name,
                        kind=bundle.kind,
                        members=mine,
                    )
                )
        await self._announce(ctx, beamline, policy, archived)

    @staticmethod
    def _plan(
        beamline: str,
        policy: ArchivePolicy,
        proposal: str,
        members: list[MemberFile],
        existing: list[ExistingBundle],
    ) -> list[BundlePlan]:
        return plan_archive(
            beamline, proposal, members, existing, part_size=policy.part_size, large_file=policy.large_file
        )

    async def _known_bundles(
        self, ctx: Context, beamline: str, policy: ArchivePolicy, proposal: str
    ) -> list[ExistingBundle]:
        """The bundles the ledger records for a proposal (for archives that cannot be listed directly)."""
        members: dict[str, list[str]] = defaultdict(list)
        for record in await (await self.ledger(ctx)).all(beamline=beamline):
            copy = record.copies.get(policy.endpoint)
            scan_path = record.scan_path or (copy.files[0].path if copy is not None else "")
            if copy is not None and copy.external_id and policy.proposal_of(scan_path) == proposal:
                members[copy.external_id] += [f.path for f in copy.files]
        return [
            ExistingBundle(
                directory=path.rsplit("/", 1)[0],
                name=path.rsplit("/", 1)[1],
                kind="htar" if path.endswith(".tar") else "hsi",
                members=names,
            )
            for path, names in sorted(members.items())
        ]

    @staticmethod
    async def _existing_verify(
        backend: ArchiveBackend,
        policy: ArchivePolicy,
        plans: list[BundlePlan],
        existing: list[ExistingBundle],
        proposal: str,
    ) -> None:
        """A bundle of the same cycle that no longer reads back is reported before a new part joins it."""
        cycles = {plan.cycle for plan in plans}
        for bundle in existing:
            if not any(part_of(proposal, cycle, bundle.name) is not None for cycle in cycles):
                continue
            try:
                await backend.members(f"{bundle.directory}/{bundle.name}")
            except UnsupportedEndpoint:
                continue  # an archive that cannot be listed here: each write job checks its own bundle
            except BundleUnverified as exc:
                raise BundleUnverified(
                    f"{bundle.directory}/{bundle.name} on {policy.endpoint} does not verify ({exc}); it was not "
                    "touched and nothing new was added to its cycle. Inspect it (`beamflow archive ls`) first"
                ) from None

    async def _announce(self, ctx: Context, beamline: str, policy: ArchivePolicy, plans: list[BundlePlan]) -> None:
        ledger = await self.ledger(ctx)
        for plan in plans:
            by_scan: dict[str, list[MemberFile]] = defaultdict(list)
            for member in plan.members:
                by_scan[member.scan_id].append(member)
            for scan_id, members in sorted(by_scan.items()):
                files = [
                    FileCopy(path=m.path, size=m.size, checksum=m.checksum or "", algorithm="xxh3-128") for m in members
                ]
                await ctx.publish(
                    ScanArchived(
                        scan_id=scan_id,
                        beamline=beamline,
                        archive_endpoint=policy.endpoint,
                        source_endpoint=policy.source,
                        bundle=plan.path,
                        members=[m.path for m in members],
                        files=files,
                    )
                )
                record = await ledger.get(scan_id)
                holders = set(record.copies) if record is not None else {policy.source}
                if record is not None and record.endpoint:
                    holders.add(record.endpoint)
                await holds.place_after_copy(
                    ctx.js, ctx.publish, self.config, scan_id, beamline, holders, policy.endpoint, files
                )


def merge_bundles(listed: list[ExistingBundle], known: list[ExistingBundle]) -> list[ExistingBundle]:
    """The bundles the archive listed, with the members the ledger knows added, plus the ledger's others."""
    merged = {bundle.name: bundle for bundle in known}
    for bundle in listed:
        extra = merged[bundle.name].members if bundle.name in merged else []
        members = sorted(set(bundle.members) | set(extra))
        merged[bundle.name] = bundle.model_copy(update={"members": members})
    return sorted(merged.values(), key=lambda bundle: bundle.name)
