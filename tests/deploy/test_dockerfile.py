"""The one image, checked as a file (Docker is not available where the tests run, so it is not built here):
what it installs, who it runs as, and that the build context cannot carry a secret or a local environment."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from tests.deploy.support import REPO, image_uid, is_secret_name

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_the_image_is_python_slim_with_beamflow_and_otlp() -> None:
    steps = instructions()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text())
    assert all(rest.split()[0] == "${PYTHON_IMAGE}" for keyword, rest in steps if keyword == "FROM")
    installs = [rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest]
    assert any('".[otlp]"' in rest for rest in installs), "installs the package with the otlp extra"
    assert not any(" -e " in rest or "--editable" in rest for rest in installs), "a regular install, not editable"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "otlp" in extras


def test_it_runs_as_a_fixed_unprivileged_user_with_the_beamflow_entrypoint() -> None:
    uid = image_uid()
    assert uid >= 1000
    stage = final_stage()
    (user,) = [rest for keyword, rest in stage if keyword == "USER"]
    assert user in (f"{uid}:{uid}", "${BEAMFLOW_UID}:${BEAMFLOW_UID}"), "numeric, so runAsNonRoot can check it"
    (entrypoint,) = [rest for keyword, rest in stage if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["beamflow"]
    (healthcheck,) = [rest for keyword, rest in stage if keyword == "HEALTHCHECK"]
    assert "/healthz" in DOCKERFILE.read_text() and "BEAMFLOW_HEALTH_PORT" in healthcheck
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert "HOME=/tmp" in env, "a read-only root: anything that wants a home writes to the /tmp volume"


def test_no_secret_is_baked_in() -> None:
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest):
                assert not is_secret_name(name), f"{keyword} {name} in the Dockerfile"


def test_the_build_context_is_an_allow_list_of_what_the_build_copies() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*", "everything is excluded unless allowed"

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
                keep = negate
        return keep

    for path in (".venv/bin/python", ".git/config", ".beamflow/state/x", "deploy/compose/.env", "tests/conftest.py"):
        assert not included(path), f"{path} would be sent to the build"
    copied = [
        source
        for keyword, rest in instructions()
        if keyword == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]  # the last word is the destination
    ]
    for source in copied:
        assert included(source), f"COPY {source}, which .dockerignore leaves out"
    # Everything setuptools builds the package from is copied: its folders and its readme.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert {folder.split("/")[0] for folder in folders} <= set(copied)
    assert project["project"]["readme"] in copied
