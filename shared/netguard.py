"""Server-side request forgery guard for webhook URLs.

A webhook URL is chosen by a customer, so without a guard our workers would POST to
whatever it names: the cloud metadata service, a database on the private network, the
worker's own loopback. Addresses are classified by :func:`refusal` (``None`` means public);
IPv6 encodings that smuggle an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the address they carry.

The same :class:`AddressPolicy` runs twice: when a URL is saved (:func:`check_url`, a
clear refusal for the caller) and at send time inside the HTTP client (the webhook
provider's resolver calls :func:`resolve_checked`), which resolves the host once, checks
every address and connects to a checked one. A name that resolves to a public address at
save time and to a private one later (DNS rebinding) therefore gets nothing. TLS still
verifies the certificate against the host name and the ``Host`` header is untouched: only
the TCP connect is redirected.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services (AWS/GCP/Azure/OpenStack on IPv4, AWS Nitro on IPv6, Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

#: Named ranges checked before the generic ``ipaddress`` properties, so a refusal says the
#: precise reason (Python's ``is_private`` lumps several of them together).
_NAMED_RANGES: tuple[tuple[str, IPNetwork], ...] = tuple(
    (reason, ipaddress.ip_network(net))
    for reason, net in (
        ("carrier-grade NAT (100.64.0.0/10)", "100.64.0.0/10"),
        ("'this network' (0.0.0.0/8)", "0.0.0.0/8"),
        ("benchmarking (198.18.0.0/15)", "198.18.0.0/15"),
        ("IETF protocol assignments (192.0.0.0/24)", "192.0.0.0/24"),
        ("documentation range", "192.0.2.0/24"),
        ("documentation range", "198.51.100.0/24"),
        ("documentation range", "203.0.113.0/24"),
        ("documentation range", "2001:db8::/32"),
        ("Teredo tunnelling (2001::/32)", "2001::/32"),
        ("discard-only (100::/64)", "100::/64"),
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class AddressRefused(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries in one of the common encodings."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not reach ``address``; None for a public unicast address."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service"
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return "a local-use NAT64 prefix (64:ff9b:1::/48)"
        inner = embedded_ipv4(address)
        if inner is not None:
            why = refusal(inner)
            return None if why is None else f"{why}, via the IPv6 encoding of {inner}"
    for reason, network in _NAMED_RANGES:
        if address.version == network.version and address in network:
            return reason
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_reserved:  # before is_private, which also covers 240.0.0.0/4
        return "reserved"
    if address.is_private:
        return "a private network"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhooks may reach: public ones, plus private ones when
    ``allow_private`` (WEBHOOK_ALLOW_PRIVATE_NETWORKS) or inside ``allowed`` subnets
    (WEBHOOK_ALLOWED_SUBNETS)."""

    allow_private: bool = False
    allowed: tuple[IPNetwork, ...] = ()

    def reason(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when it may be reached."""
        if self.allow_private:
            return None
        if any(address.version == net.version and address in net for net in self.allowed):
            return None
        return refusal(address)


def _refused(subject: str, why: str) -> AddressRefused:
    return AddressRefused(
        f"{subject} {why}; webhooks may only reach public addresses "
        "(see WEBHOOK_ALLOW_PRIVATE_NETWORKS and WEBHOOK_ALLOWED_SUBNETS)"
    )


def parse_subnets(raw: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings as networks; ValueError naming the bad one."""
    nets = []
    for item in raw:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not a subnet: {item!r} ({exc})") from None
    return tuple(nets)


Resolver = Callable[[str, int], Sequence[IPAddress]]


def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (literal addresses as they are)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    seen: dict[str, IPAddress] = {}
    for *_, sockaddr in infos:
        literal = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        seen.setdefault(literal, ipaddress.ip_address(literal))
    return list(seen.values())


#: The resolver the guard uses; tests replace it to play DNS rebinding.
resolve: Resolver = system_resolve


def resolve_checked(policy: AddressPolicy, host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``, all of them allowed by ``policy``, or AddressRefused.
    One forbidden address refuses the name: round-robin DNS must not let some requests in."""
    addresses = list(resolve(host, port))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        why = policy.reason(address)
        if why is not None:
            subject = f"{address} is" if host == str(address) else f"{host} resolves to {address}, which is"
            raise _refused(subject, why)
    return addresses


def check_url(url: str, policy: AddressPolicy) -> None:
    """Save-time check: the URL's host must resolve, and only to allowed addresses."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise AddressRefused("URL must name a host")
    if policy.allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AddressRefused(f"URL has an invalid port ({exc})") from None
    try:
        resolve_checked(policy, host, port)
    except (OSError, UnicodeError) as exc:
        # UnicodeError: a host name IDNA cannot encode (an over-long or empty label).
        raise AddressRefused(f"{host} cannot be resolved ({exc}), so its address cannot be checked") from None
