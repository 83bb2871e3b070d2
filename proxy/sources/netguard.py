"""Which IP addresses an HTTP source may connect to (SSRF protection), as pure functions.

``classify(ip)`` names the class of an address from one table of special-purpose
ranges (IANA registries, RFC 6890 and successors). IPv6 forms that carry an IPv4
address (mapped, compatible, 6to4, NAT64, Teredo, ISATAP) are unwrapped and the
embedded address is classified too: the most restrictive class wins.
``AddressPolicy.permits(ip)`` applies the ``IMGPROXY_ALLOW_*_SOURCE_ADDRESSES`` switches.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressClass(IntEnum):
    """Ordered from most to least permissive, so ``max`` picks the stricter class."""

    PUBLIC = 0
    PRIVATE = 1  # RFC 1918, CGNAT, ULA: IMGPROXY_ALLOW_PRIVATE_SOURCE_ADDRESSES
    LOOPBACK = 2  # 127/8, ::1: IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES
    LINK_LOCAL = 3  # 169.254/16 (cloud metadata), fe80::/10: ..._LINK_LOCAL_...
    BLOCKED = 4  # never: unspecified, multicast, broadcast, documentation, reserved


_C = AddressClass
# The one table: special-purpose ranges and their class. Everything else is PUBLIC,
# except IPv6 outside 2000::/3 (global unicast), which is not routable -> BLOCKED.
SPECIAL_RANGES: tuple[tuple[str, AddressClass, str], ...] = (
    # IPv4
    ("0.0.0.0/8", _C.BLOCKED, "this network / unspecified (RFC 791, 1122)"),
    ("10.0.0.0/8", _C.PRIVATE, "private (RFC 1918)"),
    ("100.64.0.0/10", _C.PRIVATE, "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", _C.LOOPBACK, "loopback (RFC 1122)"),
    ("169.254.0.0/16", _C.LINK_LOCAL, "link-local, incl. 169.254.169.254 metadata (RFC 3927)"),
    ("172.16.0.0/12", _C.PRIVATE, "private (RFC 1918)"),
    ("192.0.0.0/24", _C.BLOCKED, "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", _C.BLOCKED, "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", _C.BLOCKED, "6to4 relay anycast, deprecated (RFC 7526)"),
    ("192.168.0.0/16", _C.PRIVATE, "private (RFC 1918)"),
    ("198.18.0.0/15", _C.BLOCKED, "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", _C.BLOCKED, "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", _C.BLOCKED, "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", _C.BLOCKED, "multicast (RFC 5771)"),
    ("240.0.0.0/4", _C.BLOCKED, "reserved, incl. 255.255.255.255 broadcast (RFC 1112, 919)"),
    # IPv6
    ("::/128", _C.BLOCKED, "unspecified (RFC 4291)"),
    ("::1/128", _C.LOOPBACK, "loopback (RFC 4291)"),
    ("::/96", _C.BLOCKED, "IPv4-compatible, deprecated (RFC 4291)"),
    ("64:ff9b:1::/48", _C.PRIVATE, "local-use NAT64 (RFC 8215)"),
    ("100::/64", _C.BLOCKED, "discard-only (RFC 6666)"),
    ("2001:2::/48", _C.BLOCKED, "benchmarking (RFC 5180)"),
    ("2001:10::/28", _C.BLOCKED, "ORCHID, deprecated (RFC 4843)"),
    ("2001:20::/28", _C.BLOCKED, "ORCHIDv2 (RFC 7343)"),
    ("2001:db8::/32", _C.BLOCKED, "documentation (RFC 3849)"),
    ("3fff::/20", _C.BLOCKED, "documentation (RFC 9637)"),
    ("5f00::/16", _C.BLOCKED, "SRv6 SIDs (RFC 9602)"),
    ("fc00::/7", _C.PRIVATE, "unique local, ULA (RFC 4193)"),
    ("fe80::/10", _C.LINK_LOCAL, "link-local unicast (RFC 4291)"),
    ("fec0::/10", _C.PRIVATE, "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", _C.BLOCKED, "multicast (RFC 4291)"),
)
_NETWORKS = tuple((ipaddress.ip_network(net), cls) for net, cls, _ in SPECIAL_RANGES)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")

# IPv6 ranges that carry an IPv4 address, and where.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # RFC 4291: low 32 bits
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 (deprecated): low 32 bits
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: low 32 bits
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056: bits 16..47
_TEREDO = ipaddress.IPv6Network("2001::/32")  # RFC 4380: server 32..63, ~client low 32
_ISATAP_IIDS = (0x00005EFE, 0x02005EFE)  # RFC 5214: interface id ?:5efe:a.b.c.d


def parse(address: str) -> IPAddress:
    """An address from a string; an IPv6 zone (``fe80::1%eth0``) is dropped."""
    return ipaddress.ip_address(address.split("%", 1)[0])


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (empty for IPv4 and plain IPv6)."""
    if ip.version == 4:
        return []
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _MAPPED or ip in _NAT64:
        return [low32]
    if ip in _COMPATIBLE:
        return [] if value <= 1 else [low32]  # :: and ::1 are themselves
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        return [server, ipaddress.IPv4Address(~value & 0xFFFFFFFF)]
    if (value >> 32) & 0xFFFFFFFF in _ISATAP_IIDS:
        return [low32]
    return []


def _table_class(ip: IPAddress) -> AddressClass:
    for network, cls in _NETWORKS:
        if ip.version == network.version and ip in network:
            return cls
    if ip.version == 6 and not any(ip in net for net in (_GLOBAL_UNICAST_V6, _MAPPED, _NAT64)):
        return AddressClass.BLOCKED
    return AddressClass.PUBLIC


def classify(ip: IPAddress | str) -> AddressClass:
    """The class of ``ip``: the stricter of its own and of any IPv4 address it embeds."""
    if isinstance(ip, str):
        ip = parse(ip)
    classes = [_table_class(ip)] + [_table_class(v4) for v4 in embedded_ipv4(ip)]
    return max(classes)


@dataclass(frozen=True)
class AddressPolicy:
    """The ``IMGPROXY_ALLOW_*_SOURCE_ADDRESSES`` switches; everything off by default."""

    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> AddressPolicy:
        return cls(allow_loopback=getattr(settings, "allow_loopback_sources", False),
                   allow_private=getattr(settings, "allow_private_sources", False),
                   allow_link_local=getattr(settings, "allow_link_local_sources", False))

    def permits(self, ip: IPAddress | str) -> bool:
        cls = classify(ip)
        return (cls is AddressClass.PUBLIC
                or (cls is AddressClass.PRIVATE and self.allow_private)
                or (cls is AddressClass.LOOPBACK and self.allow_loopback)
                or (cls is AddressClass.LINK_LOCAL and self.allow_link_local))
