"""The throughput section of bench/run.py: each HTTP flow and passkey under closed-loop load (wrk,
bench/passkey_load.py), each beside a bare run before and after it."""

from __future__ import annotations

import argparse

from findings import Findings
from flows import HTTP_FLOW_SPECS, FlowResult, guarded, run_http_flow
from harness import Children, tail, wrk
from other_flows import run_passkey
from serve import Server


def servers_alive(servers: list[Server], found: Findings, after: str) -> bool:
    """Whether every server still runs; if one died, say so once, with the end of its log."""
    for server in servers:
        if server.process.poll() is not None:
            if not any(n.startswith("serve exited") for n in found.notes):
                found.notes.append(f"serve exited with {server.process.returncode} during {after}{tail(server.log, 5)}")
            return False
    return bool(servers)


def measure_flows(
    children: Children, args: argparse.Namespace, flows: list[str], servers: list[Server], bare_port: int,
    found: Findings,
) -> None:
    """The HTTP flows and passkey, each beside a bare run before and after it."""
    ceiling = 5000.0  # req/s assumed before bare has shown this machine's ceiling
    last_bare: list[float] = []  # the latest bare check, shared by the flows on either side of it
    between: list[float] = []

    def bare_check() -> list[float]:
        """One bare run between flows: this machine's speed drifts, so each flow is compared
        with bare measured just before and just after it."""
        if not bare_port:
            return []
        run = wrk(children, args, bare_port, "/", args.duration, "get")
        print(f"  bare between flows: {run.rate:.0f} req/s", flush=True)
        if run.errors:
            return []
        between.append(run.rate)
        return [run.rate]

    def beside_bare(result: FlowResult) -> None:
        nonlocal last_bare
        before = last_bare
        last_bare = bare_check()
        result.bare_beside = before + last_bare

    ports = [s.port for s in servers]
    for flow in HTTP_FLOW_SPECS:
        if flow.name not in flows or (flow.name != "bare" and not servers_alive(servers, found, "an earlier flow")):
            continue
        print(flow.name, flush=True)
        target = ([bare_port], []) if flow.name == "bare" else (ports, servers)
        result = guarded(flow.name, lambda: run_http_flow(children, args, flow, *target, ceiling))
        if flow.name == "bare" and result.runs:
            ceiling = 1.5 * max(r.rate for r in [*result.runs, *([result.warmup] if result.warmup else [])])
            last_bare = [result.runs[-1].rate]
        else:
            beside_bare(result)
        found.results.append(result)
        servers_alive(servers, found, flow.name)
    if "passkey" in flows and servers_alive(servers, found, "an earlier flow"):
        print("passkey", flush=True)
        result = guarded("passkey", lambda: run_passkey(children, args, servers, args.connections))
        beside_bare(result)
        found.results.append(result)
        servers_alive(servers, found, "passkey")
    if between:
        found.notes.append("bare between flows: " + ", ".join(f"{rate:,.0f}" for rate in between) + " req/s")
