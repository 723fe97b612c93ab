"""OpenID Connect relying parties nobody here wrote, as a test's clients of our provider
(ENVIRONMENT.md, "Independent OpenID Connect relying parties"):

- `NodeRP`: panva's openid-client 6 (OpenID Certified) running tests/rp/flow.mjs, one whole
  sign-in: discovery, an authorization URL with PKCE S256, state and nonce, then, given the URL the
  browser was redirected to, the code exchange with ID token validation, userinfo, refresh,
  revocation and the end-session URL; each step a JSON object.
- `Landing`: a page at the redirect URI (a tiny HTTP server) that records where the browser came
  back to, as the relying party's web server would.
- `ApacheRP`: Apache httpd with Debian's mod_auth_openidc, a private instance (own port, config,
  PidFile, logs) protecting /protected/, whose page shows the signed-in user's email.

    with Landing() as landing, NodeRP(issuer, "app", landing.url("/callback"), "openid email") as rp:
        browser.page.goto(rp.authorization_url())   # ...sign in, consent...
        steps = rp.finish(landing.last())

`scripts/setup test` installs what these need (npm ci in tests/rp; apache2-bin and
libapache2-mod-auth-openidc)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import pytest

from tests.support.processes import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RP_DIR = ROOT / "tests" / "rp"
FLOW = RP_DIR / "flow.mjs"
APACHE = Path("/usr/sbin/apache2")
APACHE_MODULES = Path("/usr/lib/apache2/modules")
AUTH_OPENIDC = APACHE_MODULES / "mod_auth_openidc.so"
SETUP = "run scripts/setup test"


class RelyingPartyError(AssertionError):
    """A relying party failed: what it said is in the message."""


# ------------------------------------------------------------------------------------- landing


class Landing:
    """An HTTP server on 127.0.0.1:free port that answers every GET with a short page and keeps
    the full URL of each request (`urls`), so the redirect URI a browser is sent to exists."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        urls, port = self.urls, free_port()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                urls.append(f"http://127.0.0.1:{port}{self.path}")
                body = b"<!doctype html><title>Relying party</title><p>Back at the relying party.</p>"
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                pass

        self.port = port
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def last(self, path: str = "") -> str:
        """The newest URL requested (with `path`, the newest under it)."""
        found = [url for url in self.urls if url.startswith(self.url(path))]
        assert found, f"nothing came back to {self.url(path)}; requests: {self.urls}"
        return found[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Landing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- node


def node_missing() -> str | None:
    if shutil.which("node") is None:
        return f"the relying-party tests need Node.js: {SETUP} (or apt-get install nodejs npm)"
    if not (RP_DIR / "node_modules" / "openid-client").is_dir():
        return f"tests/rp has no node_modules (openid-client): {SETUP} (or cd tests/rp && npm ci)"
    return None


class NodeRP:
    """tests/rp/flow.mjs with these client settings, started at once; it waits, after the
    authorization URL, for the callback URL on its stdin."""

    def __init__(
        self, issuer: str, client_id: str, redirect_uri: str, scope: str, secret: str | None = None,
        auth_method: str = "client_secret_basic", post_logout_redirect_uri: str | None = None,
        extra: dict[str, str] | None = None, timeout: float = 30,
    ) -> None:
        missing = node_missing()
        if missing:
            pytest.fail(missing, pytrace=False)
        env = dict(
            os.environ, OIDC_ISSUER=issuer, OIDC_CLIENT_ID=client_id, OIDC_REDIRECT_URI=redirect_uri,
            OIDC_SCOPE=scope, OIDC_CLIENT_SECRET=secret or "", OIDC_AUTH_METHOD=auth_method,
            OIDC_POST_LOGOUT_REDIRECT_URI=post_logout_redirect_uri or "", OIDC_EXTRA_PARAMS=json.dumps(extra or {}),
        )
        self.timeout = timeout
        self.process = subprocess.Popen(
            ["node", str(FLOW)], cwd=RP_DIR, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.steps: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=_lines_to_queue, args=(self.process.stdout, self._lines), daemon=True),
            threading.Thread(target=_lines_to_list, args=(self.process.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def step(self, name: str) -> dict[str, Any]:
        """The step of that name, read as far as needed (a failure or an exit is an error)."""
        for known in self.steps:
            if known["step"] == name:
                return known
        while True:
            try:
                line = self._lines.get(timeout=self.timeout)
            except queue.Empty:
                raise RelyingPartyError(f"openid-client said nothing for {self.timeout} s; {self._said()}") from None
            if line is None:
                raise RelyingPartyError(f"openid-client exited before the {name} step; {self._said()}")
            found: dict[str, Any] = json.loads(line)
            self.steps.append(found)
            if "error" in found:
                raise RelyingPartyError(f"openid-client failed at {found['step']}: {json.dumps(found['error'])}")
            if found["step"] == name:
                return found

    def authorization_url(self) -> str:
        url: str = self.step("authorize")["url"]
        return url

    def finish(self, callback_url: str) -> list[dict[str, Any]]:
        """Hands the script the URL the browser reached; every step, once the script is done."""
        self.authorization_url()
        assert self.process.stdin is not None
        self.process.stdin.write(callback_url + "\n")
        self.process.stdin.close()
        self.step("done")
        code = self.process.wait(timeout=self.timeout)
        if code != 0:
            raise RelyingPartyError(f"openid-client exited {code}; {self._said()}")
        return self.steps

    def _said(self) -> str:
        return f"its steps: {json.dumps(self.steps)}; its stderr: {''.join(self._err)}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except (ValueError, OSError):  # closed by its reader thread, or a broken pipe
                    pass

    def __enter__(self) -> NodeRP:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _lines_to_queue(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        if line.strip():
            lines.put(line)
    lines.put(None)


def _lines_to_list(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


# -------------------------------------------------------------------------------------- apache


def apache_missing() -> str | None:
    if not APACHE.is_file():
        return f"the Apache relying-party tests need {APACHE}: {SETUP} (or apt-get install apache2-bin)"
    if not AUTH_OPENIDC.is_file():
        return f"they need {AUTH_OPENIDC}: {SETUP} (or apt-get install libapache2-mod-auth-openidc)"
    return None


PROTECTED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Protected</title></head>
<body><h1>Protected</h1>
<p id="email">Signed in as <!--#echo var="OIDC_CLAIM_email" -->.</p>
<p id="user">REMOTE_USER is <!--#echo var="REMOTE_USER" -->.</p>
</body></html>
"""
SIGNED_OUT_PAGE = "<!doctype html><title>Signed out</title><h1>Signed out of the protected app</h1>\n"
MODULES = (
    "mpm_event", "authn_core", "authz_core", "authz_user", "mime", "dir", "include",
)


def openidc_site(metadata_url: str, client_id: str, secret: str, redirect_uri: str, passphrase: str, scope: str) -> str:
    """mod_auth_openidc's part of the site configuration, as docs/oidc.md gives it to copy
    (tests/test_docs.py holds the two together)."""
    return f"""OIDCProviderMetadataURL {metadata_url}
OIDCClientID {client_id}
OIDCClientSecret {secret}
OIDCRedirectURI {redirect_uri}
OIDCCryptoPassphrase {passphrase}
OIDCScope "{scope}"
OIDCPKCEMethod S256
OIDCRemoteUserClaim email

<Location /protected/>
    AuthType openid-connect
    Require valid-user
</Location>
"""


class ApacheRP:
    """A private Apache httpd with mod_auth_openidc on 127.0.0.1:`port`. Its URLs are known at
    once (to register the client); `start(metadata_url)` writes the configuration into a folder
    of its own and starts it; `stop()` stops it and removes the folder.

    /protected/ needs a sign-in (`Require valid-user`, AuthType openid-connect); its page says
    "Signed in as EMAIL." (the email claim, by SSI). `redirect_uri` is /protected/redirect_uri
    (the module's own handler); `logout_url()` is the module's logout, which sends the browser to
    the provider's end_session_endpoint with an id_token_hint and `signed_out_url` as the
    post_logout_redirect_uri; `backchannel_logout_uri` is the module's back-channel logout."""

    def __init__(self, client_id: str, secret: str, scope: str = "openid email") -> None:
        missing = apache_missing()
        if missing:
            pytest.fail(missing, pytrace=False)
        self.client_id, self.secret, self.scope = client_id, secret, scope
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.protected_url = self.base + "/protected/"
        self.redirect_uri = self.base + "/protected/redirect_uri"
        self.backchannel_logout_uri = self.redirect_uri + "?logout=backchannel"
        self.signed_out_url = self.base + "/signed-out.html"
        self.folder = Path(tempfile.mkdtemp(prefix="apache-rp-"))
        # As root, Apache's children run as www-data: they must read the pages (pytest's own
        # tmp_path is private to root), so the folder is world-readable; it holds no secret the
        # test needs kept (a throwaway client secret and passphrase).
        self.folder.chmod(0o755)
        self.conf = self.folder / "httpd.conf"
        self.error_log = self.folder / "error.log"
        self.pid_file = self.folder / "httpd.pid"

    def logout_url(self) -> str:
        return f"{self.redirect_uri}?logout={quote(self.signed_out_url, safe='')}"

    def config(self, metadata_url: str) -> str:
        root = self.folder / "htdocs"
        running_as = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        modules = "".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so\n" for name in MODULES)
        passphrase = f"{self.secret}-passphrase"
        site = openidc_site(metadata_url, self.client_id, self.secret, self.redirect_uri, passphrase, self.scope)
        return f"""# A private Apache for one test run (tests/support/relying_parties.py).
ServerRoot {self.folder}
DefaultRuntimeDir {self.folder}
PidFile {self.pid_file}
ErrorLog {self.error_log}
LogLevel warn auth_openidc:info
Listen 127.0.0.1:{self.port}
ServerName 127.0.0.1:{self.port}
{running_as}{modules}LoadModule auth_openidc_module {AUTH_OPENIDC}
TypesConfig /dev/null
AddType text/html .html .shtml
DocumentRoot {root}
DirectoryIndex index.shtml index.html

{site}
# Test only: the provider runs on plain http here.
OIDCSSLValidateServer Off

<Directory {root}>
    Require all granted
</Directory>
<Location /protected/>
    Options +Includes
    AddOutputFilter INCLUDES .shtml
</Location>
"""

    def start(self, metadata_url: str, timeout: float = 15) -> None:
        root = self.folder / "htdocs"
        (root / "protected").mkdir(parents=True)
        (root / "protected" / "index.shtml").write_text(PROTECTED_PAGE, encoding="utf-8")
        (root / "signed-out.html").write_text(SIGNED_OUT_PAGE, encoding="utf-8")
        for path in (root, root / "protected"):
            path.chmod(0o755)
        self.conf.write_text(self.config(metadata_url), encoding="utf-8")
        started = self._apache("start")
        if started.returncode != 0:
            raise RelyingPartyError(f"apache2 -k start exited {started.returncode}: {started.stderr}{self.log()}")
        wait_until(self._answers, f"Apache on {self.base}", timeout, every=0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.signed_out_url, timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _apache(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(APACHE), "-f", str(self.conf), "-k", action], capture_output=True, text=True, timeout=30,
        )

    def log(self) -> str:
        return self.error_log.read_text(encoding="utf-8", errors="replace") if self.error_log.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.pid_file.exists():
            self._apache("stop")
            wait_until(lambda: not self.pid_file.exists(), "Apache to stop", timeout, every=0.05)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ApacheRP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get_without_redirects(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of one GET, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"accept": "text/html", **(headers or {})})
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)
