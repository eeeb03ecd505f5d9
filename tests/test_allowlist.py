"""Allow-list matching (SPEC §1 "Matching") and entry validation."""

from __future__ import annotations

import ipaddress
import random

import pytest

from engine import allowlist as allowlist_module
from engine.allowlist import Allowlist, base_name, validate_entry
from engine.catalogue import CONNECTION_FROM_IP, CONNECTION_TO_IP, LOCAL_USER, PROCESS

IP = CONNECTION_TO_IP


# --- IP rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [CONNECTION_TO_IP, CONNECTION_FROM_IP])
def test_ip_is_allowed_when_inside_any_listed_cidr(rule: int) -> None:
    a = Allowlist(rule, ["10.0.0.0/8", "192.168.1.0/24"])
    assert a.allows("10.1.2.3")
    assert a.allows("192.168.1.255")
    assert not a.allows("192.168.2.1")
    assert not a.allows("11.0.0.1")


def test_bare_ipv4_address_is_a_slash_32() -> None:
    a = Allowlist(IP, ["10.0.0.5"])
    assert a.allows("10.0.0.5")
    assert not a.allows("10.0.0.4")
    assert not a.allows("10.0.0.6")


def test_bare_ipv6_address_is_a_slash_128() -> None:
    a = Allowlist(IP, ["2001:db8::5"])
    assert a.allows("2001:db8::5")
    assert a.allows("2001:DB8:0:0:0:0:0:5")
    assert not a.allows("2001:db8::6")


def test_ipv6_cidr_matches_ipv6_addresses() -> None:
    a = Allowlist(IP, ["2001:db8::/32"])
    assert a.allows("2001:db8:ffff::1")
    assert not a.allows("2001:db9::1")
    assert not a.allows("10.0.0.1")


def test_ipv4_mapped_ipv6_value_is_compared_as_ipv4() -> None:
    a = Allowlist(IP, ["10.0.0.0/8"])
    assert a.allows("::ffff:10.1.2.3")
    assert a.allows("::FFFF:0a01:0203")
    assert not a.allows("::ffff:11.1.2.3")


def test_ipv4_mapped_ipv6_entry_is_compared_as_ipv4() -> None:
    bare = Allowlist(IP, ["::ffff:10.0.0.1"])
    assert bare.allows("10.0.0.1")
    assert bare.allows("::ffff:10.0.0.1")
    assert not bare.allows("10.0.0.2")
    network = Allowlist(IP, ["::ffff:10.0.0.0/104"])
    assert network.allows("10.200.0.1")
    assert network.allows("::ffff:10.200.0.1")
    assert not network.allows("11.0.0.1")


def test_ipv6_network_that_is_not_ipv4_mapped_does_not_allow_ipv4() -> None:
    a = Allowlist(IP, ["::/0"])
    assert a.allows("2001:db8::1")
    assert not a.allows("10.0.0.1")
    assert not a.allows("::ffff:10.0.0.1")


@pytest.mark.parametrize(
    "value",
    ["", "bogus", "10.0.0.256", "10.0.0", "10.0.0.1:443", "localhost", "10.0.0.0/8", "::g"],
)
def test_unparsable_address_is_not_allowed(value: str) -> None:
    assert not Allowlist(IP, ["0.0.0.0/0", "::/0"]).allows(value)


def test_value_whitespace_and_zone_index_are_ignored() -> None:
    a = Allowlist(IP, ["10.0.0.0/8", "fe80::/10"])
    assert a.allows(" 10.0.0.1\n")
    assert a.allows("fe80::1%eth0")


def test_non_string_value_is_not_allowed() -> None:
    assert not Allowlist(IP, ["0.0.0.0/0"]).allows(167772161)  # type: ignore[arg-type]
    assert not Allowlist(PROCESS, ["x"]).allows(None)  # type: ignore[arg-type]


def test_empty_ip_allowlist_allows_nothing() -> None:
    assert not Allowlist(IP, []).allows("10.0.0.1")


def test_ip_matching_agrees_with_ipaddress_on_random_networks() -> None:
    rng = random.Random(7)
    entries = []
    for _ in range(60):
        if rng.random() < 0.6:
            net = ipaddress.IPv4Network((rng.getrandbits(32), rng.randrange(8, 33)), strict=False)
        else:
            net = ipaddress.IPv6Network(
                (rng.getrandbits(128), rng.randrange(16, 129)), strict=False
            )
        entries.append(str(net))
    nets = [ipaddress.ip_network(e) for e in entries]
    a = Allowlist(IP, entries)
    for _ in range(3000):
        base = nets[rng.randrange(len(nets))]
        if rng.random() < 0.5:
            offset = rng.randrange(base.num_addresses * 2)
            addr = ipaddress.ip_address(min(int(base.network_address) + offset, base._ALL_ONES))
        elif base.version == 4:
            addr = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            addr = ipaddress.IPv6Address(rng.getrandbits(128))
        expected = any(addr in n for n in nets if n.version == addr.version)
        assert a.allows(str(addr)) is expected, (str(addr), entries)


def test_ip_result_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allowlist_module, "CACHE_SIZE", 16)
    a = Allowlist(IP, ["10.0.0.0/24"])
    for i in range(256):
        assert a.allows(f"10.0.0.{i}")
        assert not a.allows(f"10.0.1.{i}")
        assert len(a._cache) <= 16


# --- users ---------------------------------------------------------------------------------------


def test_local_user_compares_exactly_and_case_sensitively() -> None:
    a = Allowlist(LOCAL_USER, ["root", "Admin"])
    assert a.allows("root")
    assert a.allows("Admin")
    assert not a.allows("Root")
    assert not a.allows("admin")
    assert not a.allows("roo")
    assert not a.allows("root ")


# --- processes -----------------------------------------------------------------------------------


def test_process_entry_without_separator_matches_the_base_name() -> None:
    a = Allowlist(PROCESS, ["ok"])
    assert a.allows("/usr/bin/ok")
    assert a.allows("/ok")
    assert a.allows("ok")
    assert a.allows("C:\\Tools\\ok")
    assert not a.allows("/usr/bin/ok2")
    assert not a.allows("/usr/ok/bin")


def test_process_entry_with_slash_must_equal_the_full_executable() -> None:
    a = Allowlist(PROCESS, ["/usr/bin/python3"])
    assert a.allows("/usr/bin/python3")
    assert not a.allows("python3")
    assert not a.allows("/usr/local/bin/python3")
    assert not a.allows("/usr/bin/python3 ")


def test_process_entry_with_backslash_must_equal_the_full_executable() -> None:
    a = Allowlist(PROCESS, ["C:\\Windows\\System32\\cmd.exe"])
    assert a.allows("C:\\Windows\\System32\\cmd.exe")
    assert not a.allows("cmd.exe")
    assert not a.allows("D:\\Windows\\System32\\cmd.exe")


def test_process_base_name_follows_the_last_slash_or_backslash() -> None:
    a = Allowlist(PROCESS, ["tool.exe"])
    assert a.allows("C:/mixed\\dir/tool.exe")
    assert a.allows("/odd\\path\\tool.exe")
    assert base_name("C:/a\\b/c.exe") == "c.exe"
    assert base_name("/a/b\\c") == "c"
    assert base_name("plain") == "plain"


def test_process_matching_is_case_sensitive() -> None:
    a = Allowlist(PROCESS, ["ok", "/bin/Sh"])
    assert not a.allows("/usr/bin/OK")
    assert not a.allows("/bin/sh")
    assert a.allows("/bin/Sh")


def test_worked_example_process_allow_list() -> None:
    a = Allowlist(PROCESS, ["ok"])
    assert a.allows("/usr/bin/ok")
    assert not a.allows("/bin/bad")


def test_contains_is_allows() -> None:
    a = Allowlist(LOCAL_USER, ["root"])
    assert "root" in a
    assert "bob" not in a
    assert 5 not in a


# --- entry validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "entry", "reason"),
    [
        (IP, "10.0.0.0/8", None),
        (IP, "10.0.0.1", None),
        (IP, "2001:db8::/32", None),
        (IP, "::ffff:10.0.0.0/104", None),
        (IP, "10.0.0.0/255.0.0.0", None),
        (IP, "10.0.0.1/8", "has host bits set (the network is 10.0.0.0/8)"),
        (IP, "2001:db8::1/32", "has host bits set (the network is 2001:db8::/32)"),
        (IP, "10.0.0.0/33", "is not an IP address or CIDR"),
        (IP, "10.0.0", "is not an IP address or CIDR"),
        (IP, "example.com", "is not an IP address or CIDR"),
        (IP, "10.0.0.0/", "is not an IP address or CIDR"),
        (IP, "fe80::%eth0/64", "has an IPv6 zone index"),
        (IP, "", "is empty"),
        (IP, " 10.0.0.0/8", "has leading or trailing whitespace"),
        (CONNECTION_FROM_IP, "10.0.0.0/8 ", "has leading or trailing whitespace"),
        (LOCAL_USER, "root", None),
        (LOCAL_USER, "", "is empty"),
        (LOCAL_USER, "root\n", "has leading or trailing whitespace"),
        (LOCAL_USER, "ro\x00ot", "contains a control character"),
        (PROCESS, "/usr/bin/ok", None),
        (PROCESS, "ok", None),
        (PROCESS, "C:\\Tools\\ok.exe", None),
        (PROCESS, "/usr/bin/", "ends with a path separator, so it matches no executable"),
        (PROCESS, "C:\\Tools\\", "ends with a path separator, so it matches no executable"),
        (PROCESS, 5, "is not a string"),
    ],
)
def test_validate_entry_gives_the_reason(rule: int, entry: object, reason: str | None) -> None:
    assert validate_entry(rule, entry) == reason


def test_allowlist_refuses_an_invalid_entry_by_name() -> None:
    with pytest.raises(ValueError, match=r"allow-list entry '10\.0\.0\.1/8' has host bits set"):
        Allowlist(IP, ["10.0.0.0/8", "10.0.0.1/8"])


@pytest.mark.parametrize("rule", [0, 1, 16, 21])
def test_only_allow_list_rules_have_allow_lists(rule: int) -> None:
    with pytest.raises(ValueError, match="not an allow-list rule"):
        Allowlist(rule, [])
    with pytest.raises(ValueError, match="not an allow-list rule"):
        validate_entry(rule, "x")
