"""resolve_inside: event paths stay inside their endpoint's root, on a real folder with real symlinks."""

from __future__ import annotations

from pathlib import Path

import pytest
from beamflow.common.endpoints import check_relative, resolve_inside
from beamflow.common.errors import PathOutsideRoot, PermanentError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``tmp/root`` holding ``scans/2024/sample.h5``, beside ``tmp/outside`` holding ``secret.h5``."""
    root = tmp_path / "root"
    (root / "scans/2024").mkdir(parents=True)
    (root / "scans/2024/sample.h5").write_bytes(b"data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h5").write_bytes(b"secret")
    return root


def _refused(root: Path, relpath: str) -> PathOutsideRoot:
    with pytest.raises(PathOutsideRoot) as caught:
        resolve_inside(root, relpath, "data733")
    return caught.value


def test_path_outside_root_is_permanent() -> None:
    assert issubclass(PathOutsideRoot, PermanentError)


def test_a_nested_existing_path_resolves_inside(root: Path) -> None:
    resolved = resolve_inside(root, "scans/2024/sample.h5")
    assert resolved == root.resolve() / "scans/2024/sample.h5"
    assert resolved.read_bytes() == b"data"


def test_a_nested_path_that_does_not_exist_yet_resolves_inside(root: Path) -> None:
    assert resolve_inside(root, "scans/2025/new/sample.h5") == root.resolve() / "scans/2025/new/sample.h5"


def test_harmless_dot_components_are_normalised(root: Path) -> None:
    assert resolve_inside(root, "./scans/./2024/sample.h5") == root.resolve() / "scans/2024/sample.h5"


def test_a_root_reached_through_a_symlink_works(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "root-alias"
    alias.symlink_to(root)
    assert resolve_inside(alias, "scans/2024/sample.h5") == root.resolve() / "scans/2024/sample.h5"


@pytest.mark.parametrize("relpath", ["/etc/passwd", "/scans/2024/sample.h5", "//scans"])
def test_absolute_paths_are_refused(root: Path, relpath: str) -> None:
    assert "absolute" in str(_refused(root, relpath))


def test_an_absolute_path_inside_the_root_is_still_refused(root: Path) -> None:
    _refused(root, str(root / "scans/2024/sample.h5"))


@pytest.mark.parametrize(
    "relpath",
    ["..", "../outside/secret.h5", "scans/../../outside/secret.h5", "scans/2024/../sample.h5", "a/.."],
)
def test_dot_dot_is_refused_even_when_it_would_stay_inside(root: Path, relpath: str) -> None:
    assert "'..'" in str(_refused(root, relpath))


def test_a_symlinked_file_pointing_outside_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "scans/2024/leak.h5").symlink_to(tmp_path / "outside/secret.h5")
    error = _refused(root, "scans/2024/leak.h5")
    assert "data733" in str(error) and "symlink" in str(error)


def test_a_dangling_symlink_pointing_outside_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "scans/2024/later.h5").symlink_to(tmp_path / "outside/not-yet.h5")
    _refused(root, "scans/2024/later.h5")


@pytest.mark.parametrize("target", ["file", "missing"])
def test_a_symlinked_folder_in_the_middle_pointing_outside_is_refused(root: Path, tmp_path: Path, target: str) -> None:
    (root / "scans/escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    name = "secret.h5" if target == "file" else "nothing-here.h5"
    _refused(root, f"scans/escape/{name}")


def test_a_relative_symlink_climbing_out_is_refused(root: Path) -> None:
    (root / "scans/up").symlink_to(Path("../../outside"))
    assert (root / "scans/up/secret.h5").exists()
    _refused(root, "scans/up/secret.h5")


def test_a_symlink_to_a_sibling_root_with_the_same_prefix_is_refused(root: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "root-other"
    sibling.mkdir()
    (sibling / "x.h5").write_bytes(b"x")
    (root / "sib").symlink_to(sibling)
    _refused(root, "sib/x.h5")


def test_a_symlink_to_another_place_inside_the_root_is_allowed(root: Path) -> None:
    (root / "latest").symlink_to(root / "scans/2024", target_is_directory=True)
    (root / "scans/current.h5").symlink_to(Path("2024/sample.h5"))
    assert resolve_inside(root, "latest/sample.h5") == root.resolve() / "scans/2024/sample.h5"
    assert resolve_inside(root, "scans/current.h5") == root.resolve() / "scans/2024/sample.h5"


@pytest.mark.parametrize("relpath", ["", "scans/\0sample.h5", "\0"])
def test_empty_and_nul_paths_are_refused(root: Path, relpath: str) -> None:
    assert "NUL" in str(_refused(root, relpath))


def test_check_relative_refuses_without_touching_the_filesystem(tmp_path: Path) -> None:
    assert check_relative("a/b/c.h5") == ("a", "b", "c.h5")
    assert check_relative("./a//b/") == ("a", "b")
    for bad in ("", "/a", "a/../b", "a\0"):
        with pytest.raises(PathOutsideRoot):
            check_relative(bad)
    assert list(tmp_path.iterdir()) == []
