"""The SSRF address table: pure classification over IPv4, IPv6 and embedded forms."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import make_settings
from vipsgate.sources.netguard import AddressClass, AddressPolicy, classify, embedded_ipv4

C = AddressClass

CASES = [
    # public
    ("8.8.8.8", C.PUBLIC), ("1.1.1.1", C.PUBLIC), ("93.184.216.34", C.PUBLIC),
    ("2606:4700:4700::1111", C.PUBLIC), ("2a00:1450:4001:80b::200e", C.PUBLIC),
    ("100.63.255.255", C.PUBLIC), ("100.128.0.0", C.PUBLIC), ("172.32.0.1", C.PUBLIC),
    ("11.0.0.1", C.PUBLIC), ("9.255.255.255", C.PUBLIC),
    # loopback
    ("127.0.0.1", C.LOOPBACK), ("127.255.255.254", C.LOOPBACK), ("::1", C.LOOPBACK),
    # private
    ("10.0.0.1", C.PRIVATE), ("172.16.0.1", C.PRIVATE), ("172.31.255.255", C.PRIVATE),
    ("192.168.1.1", C.PRIVATE), ("100.64.0.1", C.PRIVATE), ("100.127.255.255", C.PRIVATE),
    ("fc00::1", C.PRIVATE), ("fd12:3456:789a::1", C.PRIVATE), ("fec0::1", C.PRIVATE),
    ("64:ff9b:1::a00:1", C.PRIVATE),
    # link-local, cloud metadata
    ("169.254.169.254", C.LINK_LOCAL), ("169.254.0.1", C.LINK_LOCAL),
    ("fe80::1", C.LINK_LOCAL), ("fe80::1%eth0", C.LINK_LOCAL), ("fd00:ec2::254", C.PRIVATE),
    # never
    ("0.0.0.0", C.BLOCKED), ("0.1.2.3", C.BLOCKED), ("::", C.BLOCKED),
    ("224.0.0.1", C.BLOCKED), ("239.255.255.250", C.BLOCKED), ("ff02::1", C.BLOCKED),
    ("255.255.255.255", C.BLOCKED), ("240.0.0.1", C.BLOCKED), ("192.0.2.1", C.BLOCKED),
    ("198.51.100.7", C.BLOCKED), ("203.0.113.9", C.BLOCKED), ("198.18.0.1", C.BLOCKED),
    ("192.0.0.8", C.BLOCKED), ("2001:db8::1", C.BLOCKED), ("100::1", C.BLOCKED),
    ("3fff::1", C.BLOCKED), ("4000::1", C.BLOCKED), ("::8.8.8.8", C.BLOCKED),
    # IPv4-mapped
    ("::ffff:127.0.0.1", C.LOOPBACK), ("::ffff:10.1.2.3", C.PRIVATE),
    ("::ffff:169.254.169.254", C.LINK_LOCAL), ("::ffff:8.8.8.8", C.PUBLIC),
    ("::ffff:0.0.0.0", C.BLOCKED),
    # IPv4-compatible (deprecated): blocked whatever it carries
    ("::127.0.0.1", C.BLOCKED), ("::169.254.169.254", C.BLOCKED),
    # 6to4
    ("2002:7f00:1::1", C.LOOPBACK), ("2002:a9fe:a9fe::", C.LINK_LOCAL),
    ("2002:c0a8:101::1", C.PRIVATE), ("2002:808:808::1", C.PUBLIC),
    # NAT64 well-known prefix
    ("64:ff9b::7f00:1", C.LOOPBACK), ("64:ff9b::a9fe:a9fe", C.LINK_LOCAL),
    ("64:ff9b::10.0.0.1", C.PRIVATE), ("64:ff9b::8.8.8.8", C.PUBLIC),
    # Teredo: server 65.54.227.120 (bits 32..63), client = complement of the last 32 bits
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", C.PUBLIC),  # client 8.8.8.8
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", C.BLOCKED),  # RFC 4380's 192.0.2.45
    ("2001:0:4136:e378::80ff:fffe", C.LOOPBACK),  # client 127.0.0.1
    ("2001:0:4136:e378::5601:5601", C.LINK_LOCAL),  # client 169.254.169.254
    ("2001:0:4136:e378::f5ff:fffe", C.PRIVATE),  # client 10.0.0.1
    ("2001:0:7f00:1::f7f7:f7f7", C.LOOPBACK),  # server 127.0.0.1
    # ISATAP interface identifiers
    ("2001:4860::5efe:7f00:1", C.LOOPBACK), ("2001:4860::200:5efe:a9fe:a9fe", C.LINK_LOCAL),
    ("2001:4860::200:5efe:808:808", C.PUBLIC),
]


@pytest.mark.parametrize(("address", "expected"), CASES)
def test_classify(address: str, expected: AddressClass) -> None:
    assert classify(address) is expected


def test_teredo_unwraps_server_and_complemented_client() -> None:
    client = ipaddress.IPv4Address("127.0.0.1")
    value = (0x2001 << 112) | (int(ipaddress.IPv4Address("65.54.227.120")) << 64) \
        | (~int(client) & 0xFFFFFFFF)
    teredo = ipaddress.IPv6Address(value)
    assert embedded_ipv4(teredo) == [ipaddress.IPv4Address("65.54.227.120"), client]
    assert classify(teredo) is C.LOOPBACK


@pytest.mark.parametrize("address", [
    "::ffff:7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "2001:4860::5efe:7f00:1"])
def test_embedded_forms_unwrap_to_loopback(address: str) -> None:
    assert embedded_ipv4(ipaddress.ip_address(address)) == [ipaddress.IPv4Address("127.0.0.1")]


def test_plain_addresses_embed_nothing() -> None:
    assert embedded_ipv4(ipaddress.ip_address("8.8.8.8")) == []
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) == []


def test_policy_switches_each_class_separately() -> None:
    default = AddressPolicy()
    assert default.permits("8.8.8.8") and default.permits("2606:4700:4700::1111")
    for address in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "0.0.0.0"):
        assert not default.permits(address), address
    loopback = AddressPolicy(allow_loopback=True)
    assert loopback.permits("127.0.0.1") and loopback.permits("::1")
    assert not loopback.permits("10.0.0.1") and not loopback.permits("169.254.169.254")
    private = AddressPolicy(allow_private=True)
    assert private.permits("192.168.0.1") and private.permits("fd00::1")
    assert not private.permits("127.0.0.1")
    link_local = AddressPolicy(allow_link_local=True)
    assert link_local.permits("169.254.169.254") and not link_local.permits("10.0.0.1")
    everything = AddressPolicy(True, True, True)
    for address in ("0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "2001:db8::1"):
        assert not everything.permits(address), address


def test_policy_from_settings() -> None:
    settings = make_settings(IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES="1")
    policy = AddressPolicy.from_settings(settings)
    assert policy == AddressPolicy(allow_loopback=True)
