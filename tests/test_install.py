"""The package installs the way users install it: a wheel (and an sdist) built with `python -m build`,
installed with pip or pipx into an environment that cannot see this checkout, signs a user in.

The editable install that the other tests use would hide a missing data file: the server reads its
migrations, email templates and static files at run time, so they must travel inside the wheel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.live import LiveServer, serving
from tests.support.mail import Sink, start_sink, text_of
from tests.support.processes import clean_env
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
# Every folder of files the server opens at run time, as (folder in the checkout, place in the package).
DATA_FOLDERS = (
    (ROOT / "migrations", "passwordless/migrations"),
    (ROOT / "passwordless" / "mail" / "templates", "passwordless/mail/templates"),
    (ROOT / "passwordless" / "pages" / "static", "passwordless/pages/static"),
    (ROOT / "passwordless" / "web" / "templates", "passwordless/web/templates"),
    (ROOT / "passwordless" / "pages" / "templates", "passwordless/pages/templates"),
    (ROOT / "passwordless" / "magic_link" / "templates", "passwordless/magic_link/templates"),
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`python -m build`, as a packager runs it: an sdist, then a wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    (wheel,) = out.glob("passwordless-*.whl")
    (sdist,) = out.glob("passwordless-*.tar.gz")
    return Built(wheel, sdist)


def data_files() -> set[str]:
    """What the server may open at run time, as paths inside the package."""
    found = set()
    for folder, inside in DATA_FOLDERS:
        assert folder.is_dir(), folder
        found |= {f"{inside}/{p.relative_to(folder)}" for p in folder.rglob("*") if p.is_file()}
    return found


def test_the_wheel_carries_every_file_the_server_opens(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        members = set(wheel.namelist())
    assert any(name.startswith("passwordless/migrations/sqlite/0001_") for name in members)
    assert data_files() - members == set()


def test_the_sdist_carries_every_file_the_server_opens(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        members = {name.removeprefix(top + "/") for name in sdist.getnames()}
    assert data_files() - members == set()
    assert {f"migrations/{p.relative_to(ROOT / 'migrations')}" for p in (ROOT / "migrations").rglob("*.sql")} <= members


@pytest.fixture(scope="module")
def pip_installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed by pip (not editable); the command's path."""
    folder = tmp_path_factory.mktemp("pip-install")
    venv.create(folder / "venv", with_pip=True)
    python = folder / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", built.wheel, cwd=folder)
    return folder / "venv" / "bin" / "passwordless"


@pytest.fixture(scope="module")
def pipx_installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed by pipx into homes of the test's own; the command's path."""
    folder = tmp_path_factory.mktemp("pipx-install")
    env = clean_env(PIPX_HOME=str(folder / "home"), PIPX_BIN_DIR=str(folder / "bin"), PIPX_MAN_DIR=str(folder / "man"))
    run(sys.executable, "-m", "pipx", "install", built.wheel, cwd=folder, env=env)
    return folder / "bin" / "passwordless"


def test_pip_installs_the_package_away_from_the_checkout(pip_installed: Path, tmp_path: Path) -> None:
    python = pip_installed.parent / "python"
    where = run(python, "-c", "import passwordless; print(passwordless.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(pip_installed.parent.parent), where
    assert not Path(where).is_relative_to(ROOT)
    version = run(python, "-c", "import passwordless; print(passwordless.__version__)", cwd=tmp_path).strip()
    assert version in run(pip_installed, "--version", cwd=tmp_path)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    received = Sink()
    controller = start_sink(received)
    try:
        yield received, controller.port
    finally:
        controller.stop()


@pytest.mark.parametrize("installer", ["pip", "pipx"])
def test_the_installed_command_serves_and_signs_a_user_in(
    installer: str, request: pytest.FixtureRequest, sink: tuple[Sink, int], tmp_path: Path
) -> None:
    command: Path = request.getfixturevalue(f"{installer}_installed")
    received, smtp_port = sink
    email = (
        'transport = "smtp"\nfrom = "passwordless <auth@example.test>"\n'
        f'[email.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
    )
    with serving(tmp_path, executable=str(command), email=email) as server:
        assert _post(server, "/auth/magic-link", {"email": "ada@example.com"})[0] == 202
        body = text_of(_wait_for_message(received, "ada@example.com"))
        code = re.search(r"\b(\d{6})\b", body)
        assert code, body
        status, tokens = _post(server, "/auth/code/verify", {"email": "ada@example.com", "code": code[1]})
        assert status == 200, tokens
        me = urllib.request.Request(server.url("/auth/me"), headers={"authorization": f"Bearer {tokens['access_token']}"})
        with urllib.request.urlopen(me, timeout=10) as answer:
            assert json.load(answer)["email"] == "ada@example.com"
        assert (tmp_path / "auth.db").exists()  # the migrations ran from the installed package


def _post(server: LiveServer, path: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        server.url(path), data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def _wait_for_message(sink: Sink, to: str, timeout: float = 15) -> EmailMessage:
    return wait_until(lambda: sink.to(to), f"an email to {to} at the SMTP server", timeout, every=0.05)[0]

