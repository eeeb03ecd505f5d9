"""Allow-list matching for the four allow-list rules (SPEC §1).

- IP rules (``ConnectionToIpNotAllowed``, ``ConnectionFromIpNotAllowed``): entries are CIDRs; a bare
  address is a /32 or /128. An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``), as an entry or as a
  value, is compared as IPv4; an entry such as ``::ffff:10.0.0.0/104`` is the IPv4 network
  ``10.0.0.0/8``. Other IPv6 networks never match IPv4 values (``::/0`` allows no IPv4 address).
  A value that does not parse as an address is not allowed. A zone index on a value
  (``fe80::1%eth0``) is ignored; surrounding whitespace on a value is ignored.
- ``LocalUserNotAllowed``: exact, case-sensitive.
- ``ProcessNotAllowed``: an entry containing ``/`` or ``\\`` must equal the whole executable; any
  other entry matches the executable's base name (the text after its last ``/`` or ``\\``);
  case-sensitive.

Entries are validated by :func:`validate_entry`: an entry is refused when it is empty, has leading
or trailing whitespace, or contains a control character; an IP entry is refused when it is not an
address or CIDR, has host bits set (``10.0.0.1/8``) or carries a zone index; a process entry is
refused when it ends with a path separator.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from engine.catalogue import CONNECTION_FROM_IP, CONNECTION_TO_IP, LOCAL_USER, PROCESS

IP_RULES = frozenset((CONNECTION_TO_IP, CONNECTION_FROM_IP))
ALLOWLIST_RULE_IDS = frozenset((CONNECTION_TO_IP, CONNECTION_FROM_IP, LOCAL_USER, PROCESS))

# Results per value are cached: agents report the same few remote addresses over and over.
CACHE_SIZE = 65536

_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


def _check_rule(rule_id: int) -> None:
    if rule_id not in ALLOWLIST_RULE_IDS:
        raise ValueError(f"rule {rule_id} is not an allow-list rule")


def _parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network an IP entry stands for, IPv4-mapped networks turned into IPv4 ones."""
    net = ipaddress.ip_network(entry, strict=True)
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED_V4):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def validate_entry(rule_id: int, entry: object) -> str | None:
    """Why ``entry`` cannot be on the allow-list of rule ``rule_id`` (17..20), or None if it can.

    The reason is a predicate about the entry, e.g. ``"has host bits set (the network is
    10.0.0.0/8)"``, meant to follow the entry in a message. Raises ValueError for a rule id that is
    not an allow-list rule.
    """
    _check_rule(rule_id)
    if not isinstance(entry, str):
        return "is not a string"
    if not entry:
        return "is empty"
    if entry != entry.strip():
        return "has leading or trailing whitespace"
    if any(ord(c) < 32 or ord(c) == 127 for c in entry):
        return "contains a control character"
    if rule_id in IP_RULES:
        if "%" in entry:
            return "has an IPv6 zone index"
        try:
            _parse_network(entry)
        except ValueError as exc:
            if "host bits set" in str(exc):
                net = ipaddress.ip_network(entry, strict=False)
                return f"has host bits set (the network is {net})"
            return "is not an IP address or CIDR"
    elif rule_id == PROCESS and entry[-1] in "/\\":
        return "ends with a path separator, so it matches no executable"
    return None


def base_name(executable: str) -> str:
    """The text after the last ``/`` or ``\\`` of ``executable`` (all of it when there is none)."""
    return executable[max(executable.rfind("/"), executable.rfind("\\")) + 1 :]


_OCTET = r"(0|[1-9][0-9]{0,2})"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z", re.ASCII).match


class Allowlist:
    """The compiled allow-list of one rule; :meth:`allows` says whether a value passes."""

    __slots__ = ("_cache", "_full", "_names", "_v4", "_v6", "entries", "rule_id")

    def __init__(self, rule_id: int, entries: Iterable[str]) -> None:
        """Compile ``entries`` for rule ``rule_id`` (17..20).

        Raises ValueError naming the first invalid entry (see :func:`validate_entry`).
        """
        _check_rule(rule_id)
        self.rule_id = rule_id
        self.entries: tuple[str, ...] = tuple(entries)
        for entry in self.entries:
            reason = validate_entry(rule_id, entry)
            if reason is not None:
                raise ValueError(f"allow-list entry {entry!r} {reason}")
        self._cache: dict[str, bool] = {}
        self._v4: tuple[tuple[int, frozenset[int]], ...] = ()
        self._v6: tuple[tuple[int, frozenset[int]], ...] = ()
        self._names: frozenset[str] = frozenset()
        self._full: frozenset[str] = frozenset()
        if rule_id in IP_RULES:
            nets = [_parse_network(e) for e in self.entries]
            v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
            v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
            self._v4 = self._by_prefix(ipaddress.collapse_addresses(v4), 32)
            self._v6 = self._by_prefix(ipaddress.collapse_addresses(v6), 128)
        elif rule_id == PROCESS:
            self._full = frozenset(e for e in self.entries if "/" in e or "\\" in e)
            self._names = frozenset(e for e in self.entries if e not in self._full)
        else:
            self._names = frozenset(self.entries)

    @staticmethod
    def _by_prefix(
        nets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], bits: int
    ) -> tuple[tuple[int, frozenset[int]], ...]:
        # One set of network numbers per prefix length: a lookup costs one shift and one set
        # probe per distinct prefix length, however long the list.
        groups: dict[int, set[int]] = {}
        for net in nets:
            shift = bits - net.prefixlen
            groups.setdefault(shift, set()).add(int(net.network_address) >> shift)
        return tuple((shift, frozenset(v)) for shift, v in sorted(groups.items(), reverse=True))

    def allows(self, value: str) -> bool:
        """Whether ``value`` (an address, user name or executable as the event wrote it) passes."""
        if not isinstance(value, str):
            return False
        if self.rule_id in IP_RULES:
            hit = self._cache.get(value)
            if hit is None:
                hit = self._allows_ip(value)
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[value] = hit
            return hit
        if self.rule_id == PROCESS:
            return value in self._full or base_name(value) in self._names
        return value in self._names

    def _allows_ip(self, value: str) -> bool:
        m = _DOTTED_QUAD(value)
        if m is not None:
            # Dotted-quad IPv4, the common case, without building an ipaddress object; the
            # pattern accepts what ipaddress accepts (no leading zeros).
            a, b, c, d = map(int, m.groups())
            if a < 256 and b < 256 and c < 256 and d < 256:
                number = (a << 24) | (b << 16) | (c << 8) | d
                return any(number >> shift in numbers for shift, numbers in self._v4)
            return False
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        nets = self._v4 if addr.version == 4 else self._v6
        number = int(addr)
        return any(number >> shift in numbers for shift, numbers in nets)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.allows(value)

    def __repr__(self) -> str:
        return f"Allowlist({self.rule_id}, {list(self.entries)!r})"
