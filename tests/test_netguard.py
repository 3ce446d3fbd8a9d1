"""The SSRF guard: which addresses webhooks may reach, at save time and at connect time."""

from __future__ import annotations

import ipaddress

import pytest

from shared import netguard
from shared.netguard import AddressPolicy, AddressRefused, check_url, refusal

#: (address, words the refusal must contain); None: a public address webhooks may reach.
ADDRESSES: list[tuple[str, str | None]] = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "this network"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("::ffff:127.0.0.1", "loopback, via the IPv6 encoding of 127.0.0.1"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a00:1", "private network, via the IPv6 encoding of 10.0.0.1"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b:1::1", "NAT64"),
    ("2002:7f00:1::1", "loopback, via the IPv6 encoding of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "metadata"),
    ("2001:0:4136:e378::1", "Teredo"),
    ("93.184.216.34", None),
    ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),
    ("2002:808:808::1", None),
]


@pytest.mark.parametrize(("address", "expected"), ADDRESSES)
def test_addresses_are_classified(address: str, expected: str | None) -> None:
    """Given an address of each kind, then non-public ones are refused with the reason, and
    IPv6 encodings of IPv4 addresses are judged by the address they carry."""
    why = refusal(ipaddress.ip_address(address))

    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


@pytest.mark.parametrize(("address", "expected"), [a for a in ADDRESSES if a[1] is not None])
def test_save_time_check_refuses_literal_addresses(address: str, expected: str) -> None:
    """Given a URL naming a non-public address, when it is checked for saving, then it is
    refused with a message that says why and how to allow it."""
    host = f"[{address}]" if ":" in address else address

    with pytest.raises(AddressRefused) as caught:
        check_url(f"https://{host}/hook", AddressPolicy())

    assert expected in str(caught.value)
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS" in str(caught.value)


def test_allow_list_and_switch_let_private_addresses_through() -> None:
    """Given an allow-listed subnet, then its addresses pass and others stay refused; given
    WEBHOOK_ALLOW_PRIVATE_NETWORKS, everything passes."""
    policy = AddressPolicy(allowed=netguard.parse_subnets(["10.20.0.0/16", "fd00:1::/32"]))

    check_url("https://10.20.3.4/hook", policy)
    check_url("https://[fd00:1::5]/hook", policy)
    with pytest.raises(AddressRefused):
        check_url("https://10.21.0.1/hook", policy)
    check_url("https://169.254.169.254/latest/meta-data", AddressPolicy(allow_private=True))


def test_a_name_resolving_to_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a name with one public and one private address (round-robin DNS), then the name
    is refused: some requests would otherwise reach the private one."""
    resolved = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")]
    monkeypatch.setattr(netguard, "resolve", lambda host, port: resolved)

    with pytest.raises(AddressRefused) as caught:
        check_url("https://mixed.example/hook", AddressPolicy())

    assert "mixed.example resolves to 10.0.0.7" in str(caught.value)


def test_an_unresolvable_name_is_refused_at_save_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(host: str, port: int) -> list[netguard.IPAddress]:
        raise OSError("no such host")

    monkeypatch.setattr(netguard, "resolve", fail)

    with pytest.raises(AddressRefused, match="cannot be resolved"):
        check_url("https://nowhere.example/hook", AddressPolicy())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/hook",
        "http://example.com:80:81/hook",
        f"http://{'a' * 64}.example.com/hook",
        "http://exa\ud800mple.com/hook",
    ],
)
def test_a_url_that_cannot_be_parsed_or_resolved_is_refused(url: str) -> None:
    """Given a URL whose port or host name cannot be read, then the save-time check refuses
    it like any other unreachable URL, instead of raising ValueError to its caller."""
    with pytest.raises(AddressRefused):
        check_url(url, AddressPolicy())
