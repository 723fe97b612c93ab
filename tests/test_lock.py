"""Issue 15 item 12: the executable and the Docker image are built from requirements/build.txt,
a lock checked into the repository (written by scripts/lock), so two builds of one commit get the
same versions; pyproject's floors stay above versions with known vulnerabilities."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "build.txt"
# Versions below these have published vulnerabilities (see the comments in pyproject.toml).
KNOWN_BAD_BELOW = {"pyjwt": "2.10.1", "h11": "0.16", "starlette": "0.47.2", "cryptography": "44.0.1"}


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return data


def build_requirements() -> list[Requirement]:
    """What the build installs: the runtime dependencies and every optional group but `test`."""
    groups = project()["optional-dependencies"]
    assert isinstance(groups, dict)
    lines = list(project()["dependencies"])  # type: ignore[call-overload]
    for name, extra in groups.items():
        if name != "test":
            lines += extra
    return [Requirement(line) for line in lines]


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"not an exact pin in {LOCK.name}: {line!r}"
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def test_every_dependency_is_pinned_in_the_lock_within_pyprojects_range() -> None:
    pins = locked()
    for requirement in build_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {LOCK.name}: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's {requirement}: run scripts/lock"
        )
    assert "passwordless" not in pins  # the project itself is built from the checkout


def test_floors_are_above_known_vulnerable_versions() -> None:
    requirements = {canonicalize_name(r.name): r for r in build_requirements()}
    pins = locked()
    for name, fixed in KNOWN_BAD_BELOW.items():
        assert name in requirements, f"{name} should be a declared dependency with a floor"
        below = _just_below(fixed)
        assert not requirements[name].specifier.contains(below, prereleases=True), f"{requirements[name]} allows {below}"
        assert pins[name] >= Version(fixed)


def _just_below(version: str) -> str:
    """A version just under `version` (2.10.1 -> 2.10.0.999, 0.16 -> 0.15.999)."""
    parts = [int(p) for p in version.split(".")]
    index = max(i for i, p in enumerate(parts) if p > 0)
    parts[index] -= 1
    return ".".join(map(str, parts[: index + 1])) + ".999"


def test_the_executable_and_the_image_are_built_from_the_lock_and_nothing_else() -> None:
    build_binary = (ROOT / "scripts" / "build-binary").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY requirements requirements" in dockerfile
    for name, text in (("scripts/build-binary", build_binary), ("Dockerfile", dockerfile)):
        installs = [line for line in text.splitlines() if re.search(r"pip(\[@\]}\")? install", line)]
        assert any("-r requirements/build.txt" in line for line in installs), f"{name} does not install the lock"
        assert all("--no-deps" in line for line in installs), f"{name} lets pip resolve versions: {installs}"
        for line in installs:
            assert not re.search(r"[\"'][A-Za-z0-9_.-]+(\[[a-z,]+\])?[<>=~]", line), f"{name} installs by range: {line}"
        assert re.search(r"pip(\[@\]}\")? check", text), f"{name} does not check that the lock is complete"


def test_the_lock_is_refreshed_by_one_documented_command() -> None:
    assert (ROOT / "scripts" / "lock").stat().st_mode & 0o111
    assert "scripts/lock" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "scripts/lock" in LOCK.read_text(encoding="utf-8").splitlines()[1]
