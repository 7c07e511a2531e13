"""Rules of the code's shape that a review could miss: libs/common never imports a service."""

from __future__ import annotations

import ast
from pathlib import Path

from beamflow.common.service import discover

REPO = Path(__file__).resolve().parents[2]
SERVICES = {p.name for p in (REPO / "services").iterdir() if p.is_dir() and not p.name.startswith("_")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_common_never_imports_a_service() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in (REPO / "libs/common").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[:2] in [["beamflow", name] for name in SERVICES]
    ]
    assert offenders == []


def test_services_do_not_import_each_other() -> None:
    offenders = []
    for service in SERVICES:
        for path in (REPO / "services" / service).rglob("*.py"):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "beamflow" and len(parts) > 1 and parts[1] in SERVICES - {service}:
                    offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert offenders == []


def test_the_built_services_are_registered_as_entry_points() -> None:
    assert {"watcher", "mover"} <= set(discover())
