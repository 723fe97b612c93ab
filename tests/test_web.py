"""client_ip: X-Forwarded-For is believed only hop by hop through trusted proxies (CONFIG.md,
server.trusted_proxies). Scopes are built by hand, as an ASGI server would hand them over."""

from __future__ import annotations

import ipaddress

import pytest

from passwordless.web.client import client_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def nets(*specs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(s) for s in specs)


def scope(peer: str | None, *forwarded: str, other: dict[str, str] | None = None) -> dict[str, object]:
    headers = [(b"host", b"auth.example.com"), (b"user-agent", b"test")]
    headers += [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    headers += [(k.encode(), v.encode()) for k, v in (other or {}).items()]
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": headers,
        "client": (peer, 51000) if peer is not None else None,
    }


PROXY = "10.0.0.1"
PROXIES = nets("10.0.0.0/8")


def test_no_trusted_proxies_means_the_peer_even_with_forwarded_for() -> None:
    assert client_ip(scope("203.0.113.7", "198.51.100.1"), ()) == "203.0.113.7"
    assert client_ip(scope("203.0.113.7"), ()) == "203.0.113.7"
    assert client_ip(scope(PROXY, "198.51.100.1"), ()) == PROXY


def test_untrusted_peer_cannot_spoof_with_forwarded_for() -> None:
    assert client_ip(scope("203.0.113.7", "198.51.100.1"), PROXIES) == "203.0.113.7"
    assert client_ip(scope("203.0.113.7", "10.0.0.2, 198.51.100.1"), PROXIES) == "203.0.113.7"


def test_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert client_ip(scope(PROXY), PROXIES) == PROXY
    assert client_ip(scope(PROXY, ""), PROXIES) == PROXY


def test_trusted_peer_gives_the_rightmost_untrusted_hop() -> None:
    # the client may prepend anything; only what the trusted proxy appended counts
    assert client_ip(scope(PROXY, "198.51.100.1"), PROXIES) == "198.51.100.1"
    assert client_ip(scope(PROXY, "1.1.1.1, 2.2.2.2, 198.51.100.1"), PROXIES) == "198.51.100.1"
    assert client_ip(scope(PROXY, " 1.1.1.1 ,198.51.100.1 "), PROXIES) == "198.51.100.1"


def test_chain_of_trusted_proxies_is_walked_back() -> None:
    assert client_ip(scope(PROXY, "1.1.1.1, 198.51.100.1, 10.0.0.3, 10.0.0.2"), PROXIES) == "198.51.100.1"
    # a spoofed hop left of the real client is not believed even if it names a proxy
    assert client_ip(scope(PROXY, "10.9.9.9, 198.51.100.1, 10.0.0.2"), PROXIES) == "198.51.100.1"


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client_ip(scope(PROXY, "10.0.0.3, 10.0.0.2"), PROXIES) == "10.0.0.3"


def test_several_forwarded_for_headers_are_one_list_in_order() -> None:
    got = client_ip(scope(PROXY, "1.1.1.1, 198.51.100.1", "10.0.0.2"), PROXIES)
    assert got == "198.51.100.1"
    got = client_ip(scope(PROXY, "1.1.1.1", "198.51.100.9"), PROXIES)
    assert got == "198.51.100.9"


@pytest.mark.parametrize(
    "forwarded",
    ["garbage", "198.51.100.1, not-an-ip", "unknown", "198.51.100.1:8080", "999.1.1.1", "01.2.3.4", "\x00", "é"],
)
def test_garbage_in_the_trusted_part_falls_back_to_a_proxy(forwarded: str) -> None:
    got = client_ip(scope(PROXY, forwarded), PROXIES)
    assert got == PROXY
    ipaddress.ip_address(got)


def test_garbage_behind_a_trusted_hop_gives_that_hop_not_what_lies_beyond() -> None:
    got = client_ip(scope(PROXY, "198.51.100.1, junk, 10.0.0.5"), PROXIES)
    assert got == "10.0.0.5"


def test_garbage_left_of_the_client_is_ignored() -> None:
    assert client_ip(scope(PROXY, "junk, <script>, 198.51.100.1"), PROXIES) == "198.51.100.1"


def test_result_is_always_an_address() -> None:
    for forwarded in ("", ",,,", " , ", "a,b,c", "198.51.100.1,,", "300.300.300.300"):
        got = client_ip(scope(PROXY, forwarded), PROXIES)
        ipaddress.ip_address(got)


def test_ipv6_peer_and_hops() -> None:
    v6_proxies = nets("2001:db8:ffff::/48")
    assert client_ip(scope("2001:db8:ffff::1", "2001:db8:1::42"), v6_proxies) == "2001:db8:1::42"
    assert client_ip(scope("2001:db8:1::99", "2001:db8:1::42"), v6_proxies) == "2001:db8:1::99"
    mixed = nets("10.0.0.0/8", "2001:db8:ffff::/48")
    assert client_ip(scope(PROXY, "2001:db8:1::42, 2001:db8:ffff::2"), mixed) == "2001:db8:1::42"
    assert client_ip(scope("2001:db8:ffff::1", "198.51.100.1, 10.0.0.7"), mixed) == "198.51.100.1"
    # an IPv4 network never matches an IPv6 peer, nor the reverse
    assert client_ip(scope("2001:db8::1", "198.51.100.1"), PROXIES) == "2001:db8::1"
    assert client_ip(scope(PROXY, "198.51.100.1"), nets("2001:db8::/32")) == PROXY


@pytest.mark.parametrize(
    ("networks", "peer", "trusted"),
    [
        (("10.0.0.0/8",), "10.255.255.254", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("192.168.1.0/24",), "192.168.1.200", True),
        (("192.168.1.0/24",), "192.168.2.1", False),
        (("192.168.1.5/32",), "192.168.1.5", True),
        (("192.168.1.5/32",), "192.168.1.6", False),
        (("172.16.0.0/12", "127.0.0.1/32"), "127.0.0.1", True),
        (("172.16.0.0/12", "127.0.0.1/32"), "172.31.0.9", True),
        (("172.16.0.0/12", "127.0.0.1/32"), "172.32.0.9", False),
        (("fd00::/8",), "fd12:3456::1", True),
        (("fd00::/8",), "fe80::1", False),
    ],
)
def test_cidr_networks(networks: tuple[str, ...], peer: str, trusted: bool) -> None:
    got = client_ip(scope(peer, "198.51.100.1"), nets(*networks))
    assert got == ("198.51.100.1" if trusted else peer)


def test_missing_or_odd_peer() -> None:
    assert client_ip(scope(None, "198.51.100.1"), PROXIES) == ""
    assert client_ip(scope("unix-socket", "198.51.100.1"), PROXIES) == "unix-socket"
    assert client_ip({"type": "http", "headers": []}, PROXIES) == ""


def test_other_forwarding_headers_are_never_believed() -> None:
    other = {"x-real-ip": "198.51.100.1", "forwarded": "for=198.51.100.1", "true-client-ip": "198.51.100.1"}
    assert client_ip(scope("203.0.113.7", other=other), PROXIES) == "203.0.113.7"
    assert client_ip(scope("203.0.113.7", other=other), ()) == "203.0.113.7"
    assert client_ip(scope(PROXY, other=other), PROXIES) == PROXY
