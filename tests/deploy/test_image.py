"""The image installs exactly what pyproject.toml asks for, from hashed locks."""

import re
import tomllib

import pytest

from tests.kafka_harness import ROOT

DEPLOY = ROOT / "deploy"
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked(lock: str) -> dict[str, list[str]]:
    """Package -> its hash lines, from a pip-compile --generate-hashes file."""
    locked: dict[str, list[str]] = {}
    current = ""
    for line in (DEPLOY / lock).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            current = _normalized(line.split("==")[0])
            locked[current] = []
        elif "--hash=sha256:" in line and current:
            locked[current].append(line)
    return locked


def _requirements(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return {_normalized(found.group(0)) for r in wanted if (found := _NAME.match(r))}


@pytest.mark.parametrize(
    ("lock", "extra"), [("requirements.lock", None), ("requirements-msk.lock", "msk")]
)
def test_every_dependency_is_locked_with_hashes(lock: str, extra: str | None) -> None:
    locked = _locked(lock)

    assert _requirements(extra) <= locked.keys(), "run `make lock` after changing dependencies"
    assert all(hashes for hashes in locked.values()), "every pin carries its hashes"
    assert "--find-links" not in (DEPLOY / lock).read_text(), "no machine-local index"


def test_the_image_runs_as_a_numeric_user_and_installs_from_the_lock() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()

    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert "--require-hashes" in dockerfile
