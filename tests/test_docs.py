"""The operator docs against the code:

- docs/configuration.md is exactly what the settings declaration renders;
- every `passwordless …` command line in a sh/bash/console block of README.md and docs/*.md
  parses with the real CLI parser, and its command is one some test runs;
- deploy/kubernetes.yaml, deploy/passwordless.service and deploy/docker-compose.yml keep to one
  SQLite writer and a graceful stop (read line by line: PyYAML is not a dependency);
- relative links between the docs resolve;
- docs/oidc.md's Apache block is the configuration tests/test_oidc_relying_parties.py runs.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from passwordless.cli import _parser
from passwordless.config.kinds import Duration
from passwordless.config.load import ConfigError, load_config
from passwordless.config.render import render_reference
from passwordless.config.settings import Config
from passwordless.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.support.relying_parties import openidc_site
from tests.test_config_example import declared_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DEPLOY = ROOT / "deploy"
TESTS = ROOT / "tests"
REGENERATE = "python -m passwordless.config.render --markdown > docs/configuration.md"

# The longest a graceful stop takes with the default drain delay: the drain, then in-flight
# requests. Whatever stops the server must wait longer than this before it kills.
DEFAULT_STOP_SECONDS = Config().server.drain_delay + GRACEFUL_SHUTDOWN_SECONDS


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# --- (a) the configuration reference ------------------------------------------------------------


def test_configuration_reference_is_exactly_what_the_code_renders() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert text == render_reference(), (
        f"docs/configuration.md is out of date with passwordless/config/settings.py; regenerate it with: {REGENERATE}"
    )


def test_configuration_reference_has_a_row_for_every_setting() -> None:
    rows = {
        m[1]: m[0]
        for m in re.finditer(r"^\| `([\w.]+)` \|.*$", render_reference(), re.M)
    }
    declared = list(declared_settings())
    assert {d.key for d in declared} == set(rows)
    for d in declared:
        row = rows[d.key]
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4, row
        assert (f"`{d.meta.env}`" in cells[1]) if d.meta.env else cells[1] == "", row
        assert d.meta.doc in cells[3], row
    sections = re.findall(r"^## (.+)$", render_reference(), re.M)
    assert sections[:3] == ["Top level", "`[server]`", "`[database]`"]
    assert "`[email.smtp]`" in sections and "`[[webhooks]]`" in sections and sections[-1] == "`[[oidc.clients]]`"


# --- (b) documented commands --------------------------------------------------------------------

SHELL_LANGUAGES = {"sh", "bash", "console", "shell"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
PLACEHOLDER = re.compile(r"<([A-Za-z][\w.@-]*)>")
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", ">&", "<&", "&>"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# Commands that run another command, with their options that take a value.
WRAPPERS: dict[str, set[str]] = {
    "sudo": {"-u", "--user", "-g", "--group", "-C", "-D", "-h", "-p", "-r", "-t", "-U"},
    "env": {"-u", "--unset", "-C", "--chdir", "-S"},
    "exec": set(),
    "nohup": set(),
    "time": set(),
    "nice": {"-n"},
    "runuser": {"-u", "-g", "-G"},
    "systemd-run": {
        "-p", "--property", "-E", "--setenv", "-u", "--unit", "--uid", "--gid", "--description",
        "--slice", "-M", "--machine", "--working-directory", "--nice",
    },
}
WRAPPER_FLAGS = {
    "-E", "-H", "-i", "-n", "-S", "-s", "--preserve-env", "--login", "--quiet", "-q", "--pipe", "-P",
    "--wait", "--collect", "-G", "--same-dir", "-t", "--pty", "--user", "--system", "--scope",
}
DOCKER_VALUE_OPTIONS = {
    "-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir", "-v", "--volume", "--volumes-from",
    "-p", "--publish", "--name", "--tmpfs", "--mount", "--restart", "--stop-timeout", "--stop-signal",
    "--network", "--security-opt", "--cap-drop", "--cap-add", "--entrypoint", "--memory", "--cpus",
    "-l", "--label", "--log-driver", "--log-opt", "--health-cmd", "--hostname", "--pid", "--user",
}
DOCKER_FLAGS = {
    "-d", "--detach", "--rm", "-i", "-t", "-it", "-ti", "--interactive", "--tty", "--init", "--read-only",
    "-T", "--no-deps", "--privileged", "-q", "--quiet",
}
COMPOSE_VALUE_OPTIONS = {"-f", "--file", "-p", "--project-name", "--env-file", "--profile", "--project-directory"}


def shell_blocks(path: Path) -> Iterator[tuple[int, str, list[tuple[int, str]]]]:
    """(first line number, language, numbered lines) of each fenced code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    language, start = "", 0
    body: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, language, body, start = match[1], match[2].lower(), [], number
        elif fence is not None and line.strip().startswith(fence) and not line.strip()[len(fence):].strip():
            yield start, language, body
            fence = None
        elif fence is not None:
            body.append((number, line))
    assert fence is None, f"{path.name}: the code block opened on line {start} is never closed"


def command_lines(language: str, lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Logical command lines: continuation lines (ending in a backslash) joined; in a console
    block only the lines after a `$ ` prompt."""
    joined, first = "", 0
    for number, line in lines:
        if not joined:
            if language == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            first = number
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        yield first, joined + line
        joined = ""
    if joined:
        yield first, joined


def sample(match: re.Match[str]) -> str:
    """A value for a placeholder like <port> or <backup-file>."""
    return "3000" if "port" in match[1].lower() else "sample"


def simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command in a shell line, split at && || ; | & ( ), without
    redirections and comments."""
    lexer = shlex.shlex(PLACEHOLDER.sub(sample, line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip_next = False
    for word in lexer:
        if skip_next:
            skip_next = False
        elif word in SEPARATORS:
            commands.append([])
        elif word in REDIRECTIONS:
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the 2 of 2>/dev/null
            skip_next = True
        else:
            commands[-1].append(word)
    return [words for words in commands if words]


def after_options(words: list[str], takes_value: set[str], flags: set[str], tool: str) -> list[str]:
    """The words after a command's options; an option this test does not know is an error,
    since guessing whether it takes a value would misread the rest."""
    i = 0
    while i < len(words) and words[i].startswith("-"):
        option = words[i]
        if option == "--":
            return words[i + 1:]
        name = option.split("=", 1)[0]
        assert name in takes_value or name in flags, (
            f"{tool} option {option} is unknown to tests/test_docs.py: add it to the options that "
            "take a value or to the flags"
        )
        i += 2 if option in takes_value else 1
    return words[i:]


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def passwordless_args(words: list[str]) -> list[str] | None:
    """The arguments one simple command gives to `passwordless`, or None when it does not run
    passwordless (`systemctl restart passwordless`, `useradd … passwordless`)."""
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS):
        if ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        else:
            words = after_options(words[1:], WRAPPERS[words[0]], WRAPPER_FLAGS, words[0])
    if not words:
        return None
    head, rest = Path(words[0]).name, words[1:]
    if head == "passwordless":
        return rest
    if head.startswith("python") and rest[:2] == ["-m", "passwordless"]:
        return rest[2:]
    if head == "kubectl" and rest[:1] == ["exec"] and "--" in rest:
        return passwordless_args(rest[rest.index("--") + 1:])
    if head == "docker" and rest:
        return docker_args(rest)
    return None


def docker_args(rest: list[str]) -> list[str] | None:
    command, words = rest[0], rest[1:]
    compose = command == "compose"
    if compose:
        words = after_options(words, COMPOSE_VALUE_OPTIONS, set(), "docker compose")
        command, words = (words[0], words[1:]) if words else ("", [])
    if command not in ("exec", "run"):
        return None
    words = after_options(words, DOCKER_VALUE_OPTIONS, DOCKER_FLAGS, f"docker {command}")
    if not words:
        return None
    if command == "exec" or compose:
        # docker exec CONTAINER COMMAND…, docker compose exec|run SERVICE COMMAND…
        inner = passwordless_args(words[1:])
        return ["serve"] if inner is None and compose and command == "run" and not words[1:] else inner
    # docker run IMAGE ARGS…: the image's entrypoint is `passwordless`, its command `serve`.
    return (words[1:] or ["serve"]) if image_name(words[0]) == "passwordless" else None


def passwordless_commands(line: str) -> list[list[str]]:
    found = (passwordless_args(words) for words in simple_commands(line))
    return [args for args in found if args is not None]


def documented_commands() -> Iterator[tuple[str, str, list[str]]]:
    """(file:line, the line, the passwordless arguments) of every documented command line."""
    for path in markdown_files():
        for _, language, lines in shell_blocks(path):
            if language not in SHELL_LANGUAGES:
                continue
            for number, line in command_lines(language, lines):
                where = f"{path.relative_to(ROOT)}:{number}"
                try:
                    commands = passwordless_commands(line)
                except ValueError as exc:  # shlex: unbalanced quotes
                    if "passwordless" in line:
                        raise AssertionError(f"{where}: cannot read the shell line {line!r}: {exc}") from None
                    continue
                for args in commands:
                    yield where, line.strip(), args


def parse(args: list[str]) -> tuple[str | None, str]:
    """(the command's name, "") when the real parser accepts `passwordless ARGS`, else (None, why)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            namespace = _parser().parse_args(args)
        except SystemExit as exc:
            if exc.code == 0 and args == ["--version"]:
                return "--version", ""
            lines = (err.getvalue() or out.getvalue()).strip().splitlines()
            return None, lines[-1] if lines else f"exit {exc.code}"
    name = args[0]
    return (f"{name} {namespace.action}" if name == "keys" else name), ""


def leading_strings(nodes: list[ast.expr]) -> list[str]:
    words = []
    for node in nodes:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            break
        words.append(node.value)
    return words


def exercised_commands() -> set[str]:
    """Commands the tests run: the first arguments of each cli(…) call ("backup", "keys rotate"),
    and "serve" from server command lines such as [EXECUTABLE, "serve", …]."""
    names: set[str] = set()
    for path in sorted(TESTS.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cli":
                words = leading_strings(node.args)
            elif isinstance(node, (ast.List, ast.Tuple)) and node.elts and not isinstance(node.elts[0], ast.Constant):
                words = leading_strings(node.elts[1:])
                if words[:1] != ["serve"]:
                    continue
            else:
                continue
            if words:
                names.add(words[0])
                names.add(" ".join(words[:2]))
    return names


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("passwordless backup /var/backups/passwordless/  # dated file", [["backup", "/var/backups/passwordless/"]]),
        (".venv/bin/passwordless check-config", [["check-config"]]),
        ("/usr/local/bin/passwordless --version", [["--version"]]),
        ("python -m passwordless --version", [["--version"]]),
        ("passwordless send-test-email <you@example.com>", [["send-test-email", "sample"]]),
        ("passwordless serve --port <port>", [["serve", "--port", "3000"]]),
        ("cd /tmp && DATABASE_PATH=/tmp/x.db passwordless migrate", [["migrate"]]),
        ("sudo -u passwordless passwordless prune --dry-run 2>/dev/null", [["prune", "--dry-run"]]),
        (
            "systemd-run --quiet --pipe --uid=passwordless -p EnvironmentFile=/etc/p.env "
            "-E PASSWORDLESS_CONFIG=/etc/p.toml /usr/local/bin/passwordless keys rotate",
            [["keys", "rotate"]],
        ),
        ("docker exec passwordless passwordless backup /backups/", [["backup", "/backups/"]]),
        ("docker run --rm -v data:/data --env-file p.env passwordless restore /b/x.db", [["restore", "/b/x.db"]]),
        ("docker run -d --name passwordless -p 3000:3000 registry.example.com/passwordless:0.1.0", [["serve"]]),
        ("docker compose -f deploy/docker-compose.yml exec passwordless passwordless healthcheck", [["healthcheck"]]),
        ("kubectl exec statefulset/passwordless -- passwordless check-config", [["check-config"]]),
        ("systemctl restart passwordless", []),
        ("journalctl -u passwordless -f", []),
        ("useradd --system --home-dir /var/lib/passwordless --shell /usr/sbin/nologin passwordless", []),
        ("install -m 0755 dist/passwordless /usr/local/bin/passwordless", []),
        ("docker build -t passwordless .", []),
        ("docker logs -f passwordless", []),
        ('kubectl create secret generic s --from-literal=JWT_SECRET="$(passwordless gen-secret)"', []),
        ("sqlite3 /var/lib/passwordless/auth.db \".backup '/backups/auth.db'\"", []),
    ],
)
def test_command_lines_are_found_where_passwordless_runs(line: str, expected: list[list[str]]) -> None:
    assert passwordless_commands(line) == expected


def test_the_parser_check_catches_wrong_commands() -> None:
    assert parse(["backup", "/tmp/x.db", "--config", "c.toml"]) == ("backup", "")
    assert parse(["keys", "rotate"]) == ("keys rotate", "")
    assert parse(["--version"]) == ("--version", "")
    for wrong in (["backpu", "/tmp/x.db"], ["backup"], ["serve", "--port", "abc"], ["keys", "rot"], ["prune", "--wet-run"]):
        name, why = parse(wrong)
        assert name is None and why, wrong


def test_exercised_commands_come_from_the_tests() -> None:
    exercised = exercised_commands()
    assert {"serve", "backup", "restore", "migrate", "keys rotate", "--version"} <= exercised
    assert "restroe" not in exercised


def test_every_documented_command_parses_and_is_run_by_some_test() -> None:
    documented = list(documented_commands())
    exercised = exercised_commands()
    problems, names = [], set()
    for where, line, args in documented:
        name, why = parse(args)
        if name is None:
            problems.append(f"{where}: `{line}`: passwordless refuses {args}: {why}")
        elif name not in exercised:
            problems.append(f"{where}: `{line}`: no test runs `passwordless {name}` (cli(\"{name}\", …) in tests/)")
        else:
            names.add(name)
    assert not problems, "\n".join(problems)
    # Not vacuous: the guides show these commands in runnable blocks.
    assert {"serve", "backup", "restore", "migrate", "check-config", "gen-secret", "healthcheck",
            "keys rotate", "send-test-email", "--version"} <= names, sorted(names)


def test_every_documented_toml_snippet_is_valid_configuration(tmp_path: Path) -> None:
    """Every ```toml block of the guides loads: its keys exist and its values fit (in
    development mode, since a snippet shows only part of a production configuration)."""
    snippets = 0
    for path in markdown_files():
        for start, language, lines in shell_blocks(path):
            if language != "toml":
                continue
            snippets += 1
            file = tmp_path / f"{path.stem}-{start}.toml"
            file.write_text("\n".join(line for _, line in lines) + "\n", encoding="utf-8")
            try:
                load_config(file, {"ENVIRONMENT": "development"})
            except ConfigError as exc:
                raise AssertionError(f"{path.relative_to(ROOT)}:{start}: {exc}") from None
    assert snippets >= 3


def test_the_apache_block_is_the_one_the_relying_party_test_runs() -> None:
    """docs/oidc.md's mod_auth_openidc block, with its example values, is what Apache runs in
    tests/test_oidc_relying_parties.py (which adds only what its http test provider needs)."""
    blocks = [lines for _, language, lines in shell_blocks(DOCS / "oidc.md") if language == "apache"]
    assert len(blocks) == 1
    documented = "\n".join(line for _, line in blocks[0]) + "\n"
    tested = openidc_site(
        "https://auth.example.com/.well-known/openid-configuration", "apache", "REPLACE-with-the-same-secret",
        "https://intranet.example.com/protected/redirect_uri", "REPLACE-with-another-random-string", "openid email",
    )
    assert documented == tested


# --- (c) Kubernetes -----------------------------------------------------------------------------


def yaml_lines(path: Path) -> list[str]:
    """The file's lines without comment lines and trailing comments (none of the values used
    here contain " #")."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        lines.append(re.split(r"\s+#", line, maxsplit=1)[0].rstrip())
    return lines


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def block_under(lines: list[str], key: str) -> list[str]:
    """The lines nested under the first `key:` line (more indented than it)."""
    for i, line in enumerate(lines):
        item = line.strip().removeprefix("- ")
        if item == f"{key}:" or item.startswith(f"{key}: |"):
            body = []
            for inner in lines[i + 1:]:
                if inner.strip() and indent(inner) <= indent(line):
                    break
                body.append(inner)
            return body
    raise AssertionError(f"no {key}: in the file")


def value_of(lines: list[str], key: str) -> list[str]:
    return [m[1].strip().strip("\"'") for line in lines if (m := re.match(rf"^\s*-?\s*{key}:\s*(.+)$", line))]


def documents(lines: list[str]) -> list[list[str]]:
    found: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == "---":
            found.append([])
        else:
            found[-1].append(line)
    return [doc for doc in found if any(line.strip() for line in doc)]


def document(lines: list[str], kind: str) -> list[str]:
    matching = [doc for doc in documents(lines) if f"kind: {kind}" in doc]
    assert len(matching) == 1, f"{len(matching)} documents of kind {kind}"
    return matching[0]


def kubernetes_config(tmp_path: Path) -> Config:
    """The config.toml of the ConfigMap (its TOML comments kept), loaded as the pod loads it,
    with the secrets the Secret provides."""
    raw = (DEPLOY / "kubernetes.yaml").read_text(encoding="utf-8").splitlines()
    body = block_under(raw, "config.toml")
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent("\n".join(body)), encoding="utf-8")
    return load_config(path, {"JWT_SECRET": "k" * 43, "SMTP_PASSWORD": "p", "ADMIN_TOKEN": ""})


def test_kubernetes_manifest_runs_exactly_one_sqlite_writer() -> None:
    lines = yaml_lines(DEPLOY / "kubernetes.yaml")
    text = "\n".join(lines)
    kinds = value_of([line for line in lines if not line.startswith(" ")], "kind")
    workloads = [kind for kind in kinds if kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet")]
    assert workloads in (["StatefulSet"], ["Deployment"]), workloads
    assert "HorizontalPodAutoscaler" not in kinds
    assert value_of(lines, "replicas") == ["1"]
    if workloads == ["Deployment"]:
        recreate = "strategy:" in text and "Recreate" in value_of(block_under(lines, "strategy"), "type")
        assert recreate, "a Deployment needs strategy type Recreate: a rolling update runs two pods on the database"
        assert "PersistentVolumeClaim" in kinds
    else:
        assert block_under(lines, "volumeClaimTemplates")
    modes = [line for line in lines if "ReadWriteOnce" in line or "ReadWriteMany" in line or "ReadOnlyMany" in line]
    assert modes and all("ReadWriteOnce" in line and "Many" not in line for line in modes), modes
    assert not re.search(r"^\s*nfs:", text, re.M), "never NFS"


def test_kubernetes_probes_grace_period_and_secrets(tmp_path: Path) -> None:
    lines = yaml_lines(DEPLOY / "kubernetes.yaml")
    assert value_of(block_under(lines, "livenessProbe"), "path") == ["/liveness"]
    assert value_of(block_under(lines, "readinessProbe"), "path") == ["/readiness"]
    config = kubernetes_config(tmp_path)
    assert config.production and config.server.trusted_proxies
    assert value_of(lines, "containerPort") == [str(config.server.port)]
    grace = [int(v) for v in value_of(lines, "terminationGracePeriodSeconds")]
    assert len(grace) == 1 and grace[0] >= 15
    assert grace[0] > config.server.drain_delay + GRACEFUL_SHUTDOWN_SECONDS, (
        "terminationGracePeriodSeconds must be longer than server.drain_delay + the 10 s for in-flight requests"
    )
    secret = document(lines, "Secret")
    keys = {line.strip().split(":")[0] for line in block_under(secret, "stringData") if line.strip()}
    assert {"JWT_SECRET", "ADMIN_TOKEN", "SMTP_PASSWORD"} <= keys
    [secret_name] = value_of(block_under(secret, "metadata"), "name")
    workload = document(lines, "StatefulSet" if "kind: StatefulSet" in lines else "Deployment")
    assert value_of(block_under(workload, "secretRef"), "name") == [secret_name]


# --- (d) systemd --------------------------------------------------------------------------------


def unit_entries(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    return float(value) if value.isdigit() else Duration().parse(value)


def test_systemd_unit_serves_and_stops_gracefully() -> None:
    service = unit_entries(DEPLOY / "passwordless.service")["Service"]
    [exec_start] = service["ExecStart"]
    args = passwordless_args(shlex.split(exec_start))
    assert args is not None and parse(args) == ("serve", ""), exec_start
    assert service["KillSignal"] == ["SIGTERM"]
    # SIGTERM to the launcher alone: it passes the signal on, and a second SIGTERM (what the
    # server would get from the default KillMode=control-group) skips the drain.
    assert service["KillMode"] == ["mixed"]
    [timeout] = service["TimeoutStopSec"]
    assert seconds(timeout) > DEFAULT_STOP_SECONDS
    assert service["User"] and service["WorkingDirectory"]
    assert service["NoNewPrivileges"] == ["yes"] and service["PrivateTmp"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["WorkingDirectory"][0] in " ".join(service["ReadWritePaths"]).split()
    assert any(value.startswith(("/", "-/")) for value in service["EnvironmentFile"])


# --- docker compose -----------------------------------------------------------------------------


def test_compose_file_runs_one_container_with_its_data_in_a_volume() -> None:
    lines = yaml_lines(DEPLOY / "docker-compose.yml")
    services = block_under(lines, "services")
    assert len([line for line in services if indent(line) == 2 and line.strip().endswith(":")]) == 1
    assert not value_of(lines, "replicas") and not value_of(lines, "scale")
    assert any(re.fullmatch(r"\s*- [\w-]+:/data", line) for line in lines), "a named volume at /data"
    assert any(line.strip().startswith("- ./config.toml:/app/config.toml:ro") for line in lines)
    [grace] = value_of(lines, "stop_grace_period")
    assert seconds(grace) > DEFAULT_STOP_SECONDS


# --- (e) links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_code_blocks(text: str) -> str:
    return re.sub(r"^\s*(```+|~~~+).*?^\s*\1\s*$", "", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where links are not links."""
    return re.sub(r"`+[^`\n]*`+", "", without_code_blocks(text))


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_code_blocks(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_relative_links_between_docs_resolve() -> None:
    problems, checked = [], 0
    for path in markdown_files():
        for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            checked += 1
            file_part, _, fragment = target.partition("#")
            destination = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}: ({target})"
            if not destination.is_relative_to(ROOT):
                problems.append(f"{where} points outside the project")
            elif not destination.exists():
                problems.append(f"{where}: {destination.relative_to(ROOT)} does not exist")
            elif fragment and destination.suffix == ".md":
                if fragment not in anchors(destination.read_text(encoding="utf-8")):
                    problems.append(f"{where}: no heading #{fragment} in {destination.name}")
    assert not problems, "\n".join(problems)
    assert checked >= 20


def test_readme_links_every_doc() -> None:
    linked = set(LINK.findall(prose((ROOT / "README.md").read_text(encoding="utf-8"))))
    missing = [path.name for path in sorted(DOCS.glob("*.md")) if f"docs/{path.name}" not in linked]
    assert not missing, f"README.md's \"Operate it\" section does not link: {missing}"


def test_anchor_and_link_helpers() -> None:
    assert anchors("# Backing up\n## The `[server]` table\n## Backing up\n```sh\n# not a heading\n```\n") == {
        "backing-up", "the-server-table", "backing-up-1",
    }
    assert LINK.findall(prose("see [a](a.md), `[b](b.md)`, ![c](img/c.png \"C\") and [d](https://x)")) == [
        "a.md", "img/c.png", "https://x",
    ]
