"""The floor plan of DESIGN.md, checked by import-linter's contracts (pyproject.toml,
[tool.importlinter]): tiers (platform and web know no feature; bases users < keys < sessions;
sign-in methods build on bases only; consoles never use each other), HTTP only at the edge, stores
that hold SQL only, and no feature's routes reaching into another's.

The second test shows the contracts have teeth: each import the architecture review found (or one
like it) is put back into a copy of the package, and the check must refuse it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")

# (module file, the import put back, a contract that must then break)
OLD_REACHES = [
    ("web/client.py", "from passwordless.sessions import service", "Entry points > consoles"),
    ("sessions/service.py", "from passwordless.passkeys import store", "Entry points > consoles"),
    ("magic_link/routes.py", "from passwordless.pages import signin", "Entry points > consoles"),
    ("passkeys/service.py", "from passwordless.magic_link import rules", "Entry points > consoles"),
    ("admin/routes.py", "from passwordless.passkeys import routes", "never import another feature's routes"),
    ("webhooks/events.py", "from passwordless.users import store", "Entry points > consoles"),
    ("platform/queues/worker.py", "from passwordless.parts import Parts", "Entry points > consoles"),
    ("pages/account.py", "from passwordless.admin import service", "Entry points > consoles"),
    ("users/store.py", "from passwordless.sessions import store", "Entry points > consoles"),
    ("magic_link/service.py", "from starlette.requests import Request", "speak HTTP"),
    ("sessions/store.py", "from passwordless.sessions import service", "Stores hold SQL only"),
]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("floor-plan")
    shutil.copytree(ROOT / "passwordless", folder / "passwordless", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


@pytest.mark.parametrize(("module", "line", "contract"), OLD_REACHES, ids=[r[0] + ": " + r[1] for r in OLD_REACHES])
def test_the_contracts_refuse_the_old_reaches(package_copy: Path, module: str, line: str, contract: str) -> None:
    path = package_copy / "passwordless" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{line}  # put back by the test\n", encoding="utf-8")
    try:
        result = lint_imports(package_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0, f"{module}: '{line}' went through\n{result.stdout}"
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in broken
