"""Who is asking: the peer's address, believing X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import Scope

from passwordless.platform.client import Client

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_of(request: Request) -> Client:
    """Who is asking; the trusted proxies are the app's (`app.state.trusted_proxies`)."""
    trusted: tuple[Network, ...] = request.app.state.trusted_proxies
    return Client(client_ip(request.scope, trusted), request.headers.get("user-agent", "")[:512])


def client_ip(scope: Scope, trusted_proxies: Iterable[Network]) -> str:
    """The peer's address; X-Forwarded-For is believed only hop by hop through trusted proxies."""
    peer = scope.get("client")
    address = peer[0] if peer else ""
    networks = tuple(trusted_proxies)
    if not networks or not _within(address, networks):
        return address
    forwarded = [
        value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"x-forwarded-for"
    ]
    hops = [hop.strip() for line in forwarded for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_ip(hop):
            return address
        address = hop
        if not _within(hop, networks):
            break
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
