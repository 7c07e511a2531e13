"""The pruner's fresh check of an archived copy: a real bundle, read and re-hashed (docs/decisions/0014)."""

from __future__ import annotations

from pathlib import Path

from beamflow.common.archive_tar import LocalTarArchive
from beamflow.common.endpoints import TarArchiveEndpoint
from beamflow.common.events import FileCopy
from beamflow.common.prune import prune_controller_for
from tests.integration.test_archive_local import FILES, make_member, plan_of


async def test_an_archived_copy_checks_out_until_a_byte_of_it_changes(tmp_path: Path) -> None:
    source, root = tmp_path / "source", tmp_path / "tape"
    members = [make_member(source, rel, size) for rel, size in FILES.items()]
    plan = plan_of(members)
    await LocalTarArchive(root).write(plan, source)
    endpoint = TarArchiveEndpoint(root=root)
    check = prune_controller_for(endpoint)
    files = [FileCopy(path=m.path, size=m.size, checksum=m.checksum or "", algorithm="xxh3-128") for m in members]
    assert check.check_copy("tape", endpoint, files[:2], plan.path) == []
    assert check.check_copy("tape", endpoint, files[:2], None) != []
    assert "no bundle" in " ".join(check.check_copy("tape", endpoint, [files[0]], "bl832/raw/X/none.tar"))
    # Flip one byte inside the first member's data (the bundle is read-only: a human or a bad disk did it).
    bundle = root / plan.path
    bundle.chmod(0o644)
    data = bytearray(bundle.read_bytes())
    data[512 + 1000] ^= 0xFF
    bundle.write_bytes(bytes(data))
    problems = check.check_copy("tape", endpoint, files, plan.path)
    assert any("corrupt" in p and files[0].path in p for p in problems), problems
    assert check.check_source("tape", endpoint, files) != [], "nothing is ever pruned from an archive"
