"""Which files form a scan: files in one folder sharing a stem, complete when every suffix is present.

7.3.3 (SAXS/WAXS): ``sample_001.txt`` + ``sample_001.edf``. 8.3.2 (tomography): ``scan_0042.h5`` alone.
The scan's path is its folder and stem (``2026/run1/sample_001``), which is what the stable scan id is
derived from, so both files of a 7.3.3 scan map to one id whichever closes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import PurePosixPath

from beamflow.common.config import ScanRule


@dataclass(frozen=True)
class Member:
    scan_path: str
    suffix: str


class Grouping:
    def __init__(self, rule: ScanRule, ignore: list[str]) -> None:
        # Longest suffix first, so '.tar.gz' wins over '.gz'.
        self.suffixes = sorted(rule.suffixes, key=len, reverse=True)
        self.ignore = ignore

    def ignored(self, relpath: str) -> bool:
        return any(fnmatch(part, pattern) for part in PurePosixPath(relpath).parts for pattern in self.ignore)

    def member(self, relpath: str) -> Member | None:
        """The scan a file belongs to, or None if the rule does not cover it."""
        if self.ignored(relpath):
            return None
        for suffix in self.suffixes:
            if relpath.endswith(suffix) and len(relpath) > len(suffix) and not relpath.endswith("/" + suffix):
                return Member(scan_path=relpath[: -len(suffix)], suffix=suffix)
        return None

    def files_of(self, scan_path: str) -> list[str]:
        return [scan_path + suffix for suffix in self.suffixes]
