"""The operator files in deploy/ (Prometheus scrape config, alert rules, Grafana dashboard) against
the metrics the server really exports: every metric and label they use must be in /metrics.

PyYAML is not a dependency: alerts.yml and prometheus.yml are read with a small reader for the
part of YAML they use (block mappings, `- ` list items, quoted, plain and `|`/`>` block scalars),
and PromQL is taken apart with regular expressions, enough to find metric and label names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MakeConfig
from tests.support.app import running

pytestmark = pytest.mark.anyio

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
JOB = "passwordless"

# Series Prometheus makes itself for each target, and the labels it adds to every scraped series.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
TARGET_LABELS = {"job", "instance"}



@dataclass
class Series:
    labels: dict[str, set[str]] = field(default_factory=dict)  # label name -> values seen
    sampled: bool = False


Exported = dict[str, Series]


# --- what the server exports ------------------------------------------------------------------

# Low limits so that the traffic below makes a rate-limit hit: rate_limit_hits_total has no series
# (and so no labels to check) until a limit refuses something.
TRAFFIC_CONFIG = """
[rate_limit]
magic_link_per_email = "1/15m"
"""


def exported_series(text: str) -> Exported:
    """The series names Prometheus would store from this exposition text (sample names, e.g.
    http_requests_total and http_request_duration_seconds_bucket, not the family names the parser
    also yields), each with its label names and values."""
    series: Exported = {}
    for family in text_string_to_metric_families(text):
        for name in _names_by_type(family.name, family.type):  # known even before a first sample
            series.setdefault(name, Series())
        for sample in family.samples:
            seen = series.setdefault(sample.name, Series())
            seen.sampled = True
            for label, value in sample.labels.items():
                seen.labels.setdefault(label, set()).add(value)
    return series


def _names_by_type(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [f"{name}_total"]
    if kind == "histogram":
        return [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
    if kind == "summary":
        return [name, f"{name}_sum", f"{name}_count"]
    return [name]


async def scrape_after_traffic(make_config: MakeConfig) -> str:
    """/metrics of the real app after a little traffic: a health check, a sign-in email, the
    same again (refused by the per-email limit) and a wrong code."""
    async with running(make_config(TRAFFIC_CONFIG)) as (_, client):
        assert (await client.get("/health")).status_code == 200
        assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 202
        assert (await client.post("/auth/magic-link", json={"email": "a@example.com"})).status_code == 429
        wrong = await client.post("/auth/code/verify", json={"email": "a@example.com", "code": "000000"})
        assert wrong.status_code in (400, 401)
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text


@pytest.fixture
async def exported(make_config: MakeConfig) -> Exported:
    return exported_series(await scrape_after_traffic(make_config))


# --- PromQL, taken apart enough to check names ------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PLACEHOLDER = re.compile(r'"(\d+)"')
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"(\d+)"\s*(?:,|$)')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE)
_RANGE = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right",
             "offset", "inf", "nan", "atan2"}


@dataclass
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Query:
    metrics: dict[str, list[Matcher]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def parse_promql(expr: str) -> Query:
    """Metric names with their label matchers, and the labels of by/without/on/ignoring/group_x
    clauses. Strings are set aside first so that nothing inside them is taken for a name."""
    strings: list[str] = []

    def keep(match: re.Match[str]) -> str:
        strings.append(match.group()[1:-1])
        return f'"{len(strings) - 1}"'

    masked = _STRING.sub(keep, expr)
    query = Query()
    for opening, closing in ("()", "{}", "[]"):
        if masked.count(opening) != masked.count(closing):
            query.errors.append(f"unbalanced {opening}{closing} in {expr!r}")

    def selector(match: re.Match[str]) -> str:
        name, body = match.group(1), match.group(2)
        matchers = []
        rest = body
        while rest.strip():
            m = _MATCHER.match(rest)
            if not m:
                query.errors.append(f"cannot read the label matchers {{{body}}} in {expr!r}")
                break
            matchers.append(Matcher(m.group(1), m.group(2), strings[int(m.group(3))]))
            rest = rest[m.end():]
        if not name:
            query.errors.append(f"write the metric name before {{...}} so it can be checked: {expr!r}")
            return " "
        query.metrics.setdefault(name, []).extend(matchers)
        return " "

    rest = _SELECTOR.sub(selector, masked)
    for match in _GROUPING.finditer(rest):
        query.grouping.update(label.strip() for label in match.group(1).split(",") if label.strip())
    rest = _GROUPING.sub(" ", rest)
    rest = _OFFSET.sub(" ", _RANGE.sub(" ", rest))
    rest = _VARIABLE.sub(" ", _PLACEHOLDER.sub(" ", rest))
    for match in _IDENTIFIER.finditer(rest):
        name = match.group(1)
        if name.lower() not in _KEYWORDS:
            query.metrics.setdefault(name, [])
    return query


def problems(expr: str, exported: Exported) -> list[str]:
    """What in `expr` the server does not export: unknown metric names, label names that are not
    on the metric, and label values (in = and != matchers) it never takes."""
    query = parse_promql(expr)
    found = list(query.errors)
    if not query.metrics:
        found.append(f"no metric found in {expr!r}")
    for name, matchers in query.metrics.items():
        if name in SCRAPE_SERIES:
            series = Series(sampled=True)
        elif name in exported:
            series = exported[name]
        else:
            found.append(f"{name}: not a series in /metrics (in {expr!r})")
            continue
        labels = series.labels
        if not series.sampled and (query.grouping or matchers):
            found.append(f"{name}: /metrics has no sample of it, so its labels cannot be checked")
            continue
        known = set(labels) | TARGET_LABELS
        for label in sorted(query.grouping - known):
            found.append(f"{name}: has no label {label!r} to group by (it has {sorted(known)})")
        for m in matchers:
            if m.label not in known:
                found.append(f"{name}: has no label {m.label!r} (it has {sorted(known)})")
            elif m.op in ("=", "!=") and m.label in labels and "$" not in m.value and m.value not in labels[m.label]:
                found.append(f"{name}: label {m.label} is never {m.value!r} (seen: {sorted(labels[m.label])})")
    return found


# --- a reader for the YAML these files use ----------------------------------------------------

YamlValue = Union[str, dict[str, Any]]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _skippable(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _scalar(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        assert text.endswith('"') and len(text) > 1, f"unterminated string: {text}"
        return str(json.loads(text))  # YAML's double-quoted escapes, as far as these files go
    if text.startswith("'"):
        assert text.endswith("'") and len(text) > 1, f"unterminated string: {text}"
        return text[1:-1].replace("''", "'")
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def _block_scalar(style: str, lines: list[str]) -> str:
    content = list(lines)
    while content and not content[-1].strip():
        content.pop()
    indent = min(_indent(line) for line in content if line.strip())
    rows = [line[indent:] for line in content]
    if style.startswith(">"):
        text = " ".join(row.strip() for row in rows if row.strip())
    else:
        text = "\n".join(rows)
    return text if style.endswith("-") else text + "\n"


def read_mapping(lines: list[str], indent: int) -> dict[str, YamlValue]:
    """A block mapping whose keys sit at `indent`; a key with nothing after it holds a nested
    mapping (or a list, kept as its raw text under the key "-")."""
    out: dict[str, YamlValue] = {}
    i = 0
    while i < len(lines):
        if _skippable(lines[i]):
            i += 1
            continue
        line = lines[i]
        assert _indent(line) == indent, f"unexpected indentation: {line!r}"
        key, colon, rest = line.strip().partition(":")
        assert colon and key, f"not a `key: value` line: {line!r}"
        j = i + 1
        while j < len(lines) and (_skippable(lines[j]) or _indent(lines[j]) > indent):
            j += 1
        body, rest = lines[i + 1 : j], rest.strip()
        assert key not in out, f"{key} twice"
        if rest[:1] in ("|", ">"):
            out[key] = _block_scalar(rest, body)
        elif rest:
            assert not any(line.strip() for line in body if not _skippable(line)), f"{key}: a value and a block"
            out[key] = _scalar(rest)
        else:
            inner = [line for line in body if not _skippable(line)]
            if inner and inner[0].lstrip().startswith("- "):
                out[key] = {"-": "\n".join(inner)}
            else:
                out[key] = read_mapping(body, _indent(inner[0])) if inner else ""
        i = j
    return out


@dataclass
class Rule:
    alert: str
    body: dict[str, YamlValue]

    def text(self, key: str) -> str:
        value = self.body.get(key)
        return value if isinstance(value, str) else ""

    def section(self, key: str) -> dict[str, YamlValue]:
        value = self.body.get(key)
        return value if isinstance(value, dict) else {}


def read_rules(text: str) -> list[Rule]:
    """Every `- alert:` item of a rules file, read as a mapping."""
    lines = text.splitlines()
    rules = []
    for i, line in enumerate(lines):
        if not re.match(r"\s*- alert:", line):
            continue
        dash = _indent(line)
        j = i + 1
        while j < len(lines) and (_skippable(lines[j]) or _indent(lines[j]) > dash):
            j += 1
        item = [" " * (dash + 2) + line.lstrip()[2:], *lines[i + 1 : j]]
        body = read_mapping(item, dash + 2)
        rules.append(Rule(str(body["alert"]), body))
    return rules


def alert_rules() -> list[Rule]:
    return read_rules((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))


# --- the dashboard ----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return loaded


def dashboard_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for each panel target and each query variable; a variable's
    label_values(selector, label) is checked as `sum by (label) (selector)`."""
    queries = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in dash["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text)
        assert m, f"variable {variable['name']}: only label_values(selector, label) is checked: {text!r}"
        queries.append((f"variable {variable['name']!r}", f"sum by ({m.group(2)}) ({m.group(1)})"))
    return queries


# --- the PromQL reader and the checking function ----------------------------------------------


def test_parse_promql_finds_names_labels_and_grouping() -> None:
    query = parse_promql(
        'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket'
        '{job="$job", status=~"5..", route!="/x{y}"}[$__rate_interval] offset 5m))) > 0.25 and on() up == 1'
    )
    assert not query.errors
    assert set(query.metrics) == {"http_request_duration_seconds_bucket", "up"}
    matchers = [(m.label, m.op, m.value) for m in query.metrics["http_request_duration_seconds_bucket"]]
    assert matchers == [("job", "=", "$job"), ("status", "=~", "5.."), ("route", "!=", "/x{y}")]
    assert query.grouping == {"le", "route"}
    postfix = parse_promql('sum(rate(auth_attempts_total{status="failure"}[5m])) by (method) / 2e3')
    assert set(postfix.metrics) == {"auth_attempts_total"} and postfix.grouping == {"method"}
    assert parse_promql("sum(rate(x[5m])").errors


async def test_wrong_names_are_caught(exported: Exported) -> None:
    assert problems('sum by (route) (rate(http_requests_total{job="passwordless"}[5m]))', exported) == []
    wrong = {
        "sum(rate(http_requests_totl[5m]))": "http_requests_totl",
        "sum(rate(http_requests[5m]))": "http_requests",  # the parser's family name: no such series
        "histogram_quantile(0.99, rate(http_request_duration_seconds[5m]))": "http_request_duration_seconds",
        "sum by (rout) (rate(http_requests_total[5m]))": "'rout'",
        'rate(email_deliveries_total{reslt="dead"}[5m])': "'reslt'",
        'rate(email_deliveries_total{result="failed"}[5m])': "'failed'",
        'sum by (le) (rate(http_requests_total[5m]))': "'le'",  # only the histogram's buckets have le
        '{__name__="active_sessions"}': "metric name",
    }
    for expr, name in wrong.items():
        found = problems(expr, exported)
        assert found and name in " ".join(found), (expr, found)


async def test_a_misspelt_metric_in_the_files_fails_the_check(exported: Exported) -> None:
    text = (DEPLOY / "alerts.yml").read_text(encoding="utf-8").replace("auth_attempts_total", "auth_attempt_total")
    found = [p for rule in read_rules(text) for p in problems(rule.text("expr"), exported)]
    assert any("auth_attempt_total" in p for p in found)
    dash = json.loads(
        (DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8").replace('(result)', '(outcome)')
    )
    found = [p for _, expr in dashboard_queries(dash) for p in problems(expr, exported)]
    assert any("'outcome'" in p for p in found)


# --- alerts.yml -------------------------------------------------------------------------------


def test_read_rules_reads_block_scalars_and_nested_mappings() -> None:
    text = (
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(x)\n"
        "            > 1\n\n        for: 5m\n        labels:\n          severity: page # loud\n"
        "        annotations:\n          summary: 'it''s {{ $value }}'\n          description: >-\n"
        "            one\n            two\n      - alert: B\n        expr: \"y{a=\\\"b\\\"} == 0\"\n"
    )
    a, b = read_rules(text)
    assert (a.alert, a.text("expr"), a.text("for")) == ("A", "sum(x)\n  > 1\n", "5m")
    assert a.section("labels") == {"severity": "page"}
    assert a.section("annotations") == {"summary": "it's {{ $value }}", "description": "one two"}
    assert (b.alert, b.text("expr"), b.text("for")) == ("B", 'y{a="b"} == 0', "")


def test_alerts_are_the_expected_ones_and_complete() -> None:
    text = (DEPLOY / "alerts.yml").read_text(encoding="utf-8")
    assert re.search(r"^groups:\s*$", text, re.M) and re.search(r"^\s+rules:\s*$", text, re.M)
    rules = alert_rules()
    names = [rule.alert for rule in rules]
    assert len(rules) == len(re.findall(r"^\s*expr:", text, re.M)) == len(set(names))
    assert set(names) == {
        "PasswordlessDown", "HighSignInFailureRate", "HighLatencyP99",
        "EmailQueueBacklog", "DeadEmails", "WebhooksDead",
    }
    for rule in rules:
        assert set(rule.body) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule.alert
        assert rule.text("expr").strip(), rule.alert
        assert re.fullmatch(r"\d+[smh]", rule.text("for")), f"{rule.alert}: for: {rule.text('for')!r}"
        assert rule.section("labels").get("severity") in ("critical", "warning", "info"), rule.alert
        annotations = rule.section("annotations")
        for key in ("summary", "description"):
            value = annotations.get(key)
            assert isinstance(value, str) and len(value.strip()) > 20, f"{rule.alert}: annotations.{key}"
        # Metric names such as http_requests_total are common: select this job's series only.
        assert f'job="{JOB}"' in rule.text("expr"), f"{rule.alert} does not select job={JOB}"


def test_alert_expressions_say_what_was_asked() -> None:
    exprs = {rule.alert: " ".join(rule.text("expr").split()) for rule in alert_rules()}
    assert re.fullmatch(r'up\{job="passwordless"\} == 0', exprs["PasswordlessDown"])
    assert "histogram_quantile(0.99," in exprs["HighLatencyP99"]
    assert "http_request_duration_seconds_bucket" in exprs["HighLatencyP99"]
    assert exprs["HighLatencyP99"].endswith("> 0.25")
    assert 'status="failure"' in exprs["HighSignInFailureRate"]
    assert 'email_queue_depth{job="passwordless", status="pending"}' in exprs["EmailQueueBacklog"]
    assert re.search(r'increase\(email_deliveries_total\{[^}]*result="dead"', exprs["DeadEmails"])
    assert re.search(r'increase\(webhook_deliveries_total\{[^}]*result="dead"', exprs["WebhooksDead"])


async def test_alert_expressions_use_only_what_metrics_exports(exported: Exported) -> None:
    found = {rule.alert: problems(rule.text("expr"), exported) for rule in alert_rules()}
    assert {name: p for name, p in found.items() if p} == {}


# --- prometheus.yml ---------------------------------------------------------------------------


def test_scrape_config(make_config: MakeConfig) -> None:
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    active = [line for line in text.splitlines() if not _skippable(line)]
    config = read_mapping(active, 0)
    assert set(config) >= {"global", "rule_files", "scrape_configs"}
    listed = config["rule_files"]
    assert isinstance(listed, dict)
    rule_files = re.findall(r"^\s*- (\S+)\s*$", str(listed["-"]), re.M)
    assert rule_files == ["alerts.yml"] and (DEPLOY / rule_files[0]).is_file()
    jobs = re.findall(r"^\s*- job_name:\s*(\S+)\s*$", "\n".join(active), re.M)
    assert jobs == [JOB]
    assert re.search(r"^\s+metrics_path:\s*/metrics\s*$", text, re.M)
    assert re.search(rf"^\s+- localhost:{make_config().server.port}\s*$", text, re.M)
    # The bearer token is optional, so it is there but commented out.
    assert not any(re.search(r"authorization|credentials|bearer_token", line) for line in active)
    commented = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert any(re.search(r"#\s*credentials_file:\s*\S+", line) for line in commented)
    assert any("metrics.token" in line for line in commented)


# --- grafana-dashboard.json -------------------------------------------------------------------

PANELS = {
    "Request rate by route", "Latency p50 / p99", "4xx / 5xx responses", "p99 latency by route",
    "Sign-in attempts by method and outcome", "Rate-limit hits", "Active sessions",
    "Email queue depth by status", "Email deliveries by result", "Webhook deliveries by result",
    "OpenID Connect requests by endpoint and result",
    "OpenID Connect back-channel logout deliveries",
}


def test_dashboard_shape() -> None:
    dash = dashboard()
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = dash["panels"]
    assert {panel["title"] for panel in panels} == PANELS
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source and target["expr"].strip(), panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == source, variable["name"]
    # Every variable a query uses is defined (Grafana's own are $__...).
    used = {v for _, expr in dashboard_queries(dash) for v in re.findall(r"\$(\w+)", expr)}
    assert {v for v in used if not v.startswith("__")} <= set(variables)


async def test_dashboard_queries_use_only_what_metrics_exports(exported: Exported) -> None:
    found = {where: problems(expr, exported) for where, expr in dashboard_queries(dashboard())}
    assert {where: p for where, p in found.items() if p} == {}


async def test_dashboard_shows_every_metric_the_server_exports(make_config: MakeConfig) -> None:
    text = await scrape_after_traffic(make_config)
    families = [f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")]
    main_series = {_names_by_type(f.name, f.type)[0] for f in families}
    assert len(main_series) >= 8
    used = {name for _, expr in dashboard_queries(dashboard()) for name in parse_promql(expr).metrics}
    assert main_series - used == set()


async def test_traffic_gives_every_used_metric_a_sample(exported: Exported) -> None:
    """Otherwise the label checks above would have nothing to compare with."""
    exprs = [rule.text("expr") for rule in alert_rules()] + [expr for _, expr in dashboard_queries(dashboard())]
    used = {name for expr in exprs for name in parse_promql(expr).metrics} - SCRAPE_SERIES
    assert {name for name in used if not exported[name].sampled} == set()
