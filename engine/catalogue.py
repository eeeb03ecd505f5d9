"""The 20 custom-alert rule types of Defender for IoT device security groups.

Ids are stable: the store keeps them in its events table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HUB = "IoT Hub"
AGENT = "Agent"
PROTOCOLS = ("amqp", "mqtt", "http")


@dataclass(frozen=True, slots=True)
class RuleType:
    """A rule type: its Azure ``ruleType`` name, kind, data source and the texts of its alert."""

    id: int
    name: str
    kind: Literal["range", "allowlist"]
    source: str
    display_name: str
    description: str
    remediation: str

    @property
    def alert_type(self) -> str:
        return f"IoT_CA_{self.name}"

    @property
    def is_range(self) -> bool:
        return self.kind == "range"


def _range(
    i: int,
    name: str,
    source: str,
    what: str,
    description: str,
    remediation: str,
    display: str | None = None,
) -> RuleType:
    # Most names follow one pattern; Defender's table words two of them differently.
    display = display or f"Custom alert - The number of {what} is outside the allowed range"
    return RuleType(i, name, "range", source, display, description, remediation)


_PROTO_TITLE = {"amqp": "AMQP", "mqtt": "MQTT", "http": "HTTP"}
_CHECK_CLIENT = (
    "Check which application or service talks to the device over {p}, whether its schedule or "
    "configuration changed, and whether the device's credentials may be in other hands; if the "
    "new level is expected, widen the allowed range for the device's security group."
)

_rules: list[RuleType] = []
for _off, _p in enumerate(PROTOCOLS):
    _t = _PROTO_TITLE[_p]
    _rules.append(
        _range(
            1 + _off,
            f"{_p.capitalize()}C2DMessagesNotInAllowedRange",
            HUB,
            f"cloud to device messages in {_t} protocol",
            f"The number of cloud-to-device messages delivered to the device over {_t} in the time "
            "window is outside the range set for its security group. An unexpected burst or silence "
            "of commands can mean a misbehaving back end, a replayed command stream or a device that "
            "has dropped off its service.",
            _CHECK_CLIENT.format(p=_t),
        )
    )
for _off, _p in enumerate(PROTOCOLS):
    _t = _PROTO_TITLE[_p]
    _rules.append(
        _range(
            4 + _off,
            f"{_p.capitalize()}C2DRejectedMessagesNotInAllowedRange",
            HUB,
            f"rejected cloud to device messages in {_t} protocol",
            f"The number of cloud-to-device messages over {_t} that the device rejected in the time "
            "window is outside the allowed range. A device that rejects commands it used to accept "
            "may be running other firmware, be misconfigured, or be refusing tampered messages.",
            "Compare the rejected messages with what the back end meant to send, check the device's "
            "firmware version and logs for why it rejects them, and verify that the sender is "
            "legitimate before widening the range.",
            # Defender's table says "is not in" for HTTP only.
            "Custom alert - The number of rejected cloud to device messages in HTTP protocol is "
            "not in the allowed range"
            if _p == "http"
            else None,
        )
    )
for _off, _p in enumerate(PROTOCOLS):
    _t = _PROTO_TITLE[_p]
    _rules.append(
        _range(
            7 + _off,
            f"{_p.capitalize()}D2CMessagesNotInAllowedRange",
            HUB,
            f"device to cloud messages in {_t} protocol",
            f"The number of device-to-cloud messages the device sent over {_t} in the time window is "
            "outside the allowed range. Too many can mean a flooding or compromised device or data "
            "being carried off; too few can mean a stalled, disconnected or tampered device.",
            "Look at the device's telemetry rate and recent changes (firmware, configuration, "
            "network); isolate it if the traffic is not explained, and adjust the range if the new "
            "rate is legitimate.",
        )
    )
_rules += [
    _range(
        10,
        "DirectMethodInvokesNotInAllowedRange",
        HUB,
        "direct method invokes",
        "The number of direct methods invoked on the device in the time window is outside the "
        "allowed range. Unplanned method calls can be an attacker operating the device through "
        "the hub.",
        "Find who invoked the methods (service identity, shared access policy) and whether they "
        "were planned; rotate the hub's access keys if an unknown caller is involved.",
    ),
    _range(
        11,
        "FileUploadsNotInAllowedRange",
        HUB,
        "file uploads",
        "The number of files the device uploaded in the time window is outside the allowed range. "
        "Unexpected uploads can be data exfiltration; missing ones, a broken collection job.",
        "Inspect the uploaded blobs and the process on the device that uploads them; revoke the "
        "device's credentials if the uploads are not its own.",
    ),
    _range(
        12,
        "QueuePurgesNotInAllowedRange",
        HUB,
        "command queue purges",
        "The number of purges of the device's cloud-to-device command queue in the time window "
        "is outside the allowed range. Purging hides or drops commands meant for the device.",
        "Check which service identity purged the queue and why; restrict the permissions that "
        "allow purging if the caller is not expected.",
        "Custom alert - The number of command queue purges that are outside of the allowed range",
    ),
    _range(
        13,
        "TwinUpdatesNotInAllowedRange",
        HUB,
        "module twin updates",
        "The number of twin updates (device or module twin, by the device or by a service) in the "
        "time window is outside the allowed range. Twin changes reconfigure devices; an unusual "
        "number can be tampering or a runaway deployment.",
        "Review the twin's change history and the identities that wrote it; roll back unwanted "
        "desired properties and restrict write access to the twin.",
    ),
    _range(
        14,
        "UnauthorizedOperationsNotInAllowedRange",
        HUB,
        "unauthorized operations",
        "The number of operations on or by the device that failed as unauthorized (401) in the "
        "time window is outside the allowed range. Repeated authorization failures suggest "
        "credential guessing, expired or revoked credentials, or a cloned device.",
        "Check the device's credentials and certificates, look for another client using its id, "
        "and block the source if the attempts are hostile.",
    ),
    _range(
        15,
        "ActiveConnectionsNotInAllowedRange",
        AGENT,
        "active connections",
        "The number of network connections the device opened or accepted in the time window, as "
        "reported by its security agent, is outside the allowed range. A jump can be scanning, "
        "a backdoor or malware calling out.",
        "List the device's connections (remote addresses, executables) around the alert and "
        "compare them with its normal behaviour; isolate the device if they are not explained.",
    ),
    _range(
        16,
        "FailedLocalLoginsNotInAllowedRange",
        AGENT,
        "failed local logins",
        "The number of failed local logins on the device in the time window is outside the "
        "allowed range. Many failures suggest password guessing on the device.",
        "Find the accounts and origins of the failed logins, lock or rename targeted accounts, "
        "enforce strong credentials and disable unused login services.",
    ),
    RuleType(
        17,
        "ConnectionToIpNotAllowed",
        "allowlist",
        AGENT,
        "Custom alert - The outbound connection created to an IP that isn't allowed",
        "The device opened a connection to an address outside the allow-list of its security "
        "group. Devices usually talk to a few known endpoints; a new destination can be "
        "command-and-control traffic or data leaving the device.",
        "Identify the executable that made the connection and the destination; block the "
        "address and investigate the device, or add the address to the allow-list if it is "
        "legitimate.",
    ),
    RuleType(
        18,
        "ConnectionFromIpNotAllowed",
        "allowlist",
        AGENT,
        "Custom alert - The inbound connection created from an IP that isn't allowed",
        "The device accepted a connection from an address outside the allow-list of its "
        "security group. Unexpected inbound connections can be remote access by an intruder.",
        "Identify the listening service and the remote address; close the service or firewall "
        "the address, or add it to the allow-list if it is legitimate.",
    ),
    RuleType(
        19,
        "LocalUserNotAllowed",
        "allowlist",
        AGENT,
        "Custom alert - The sign in of a user that is not on the allowed user list",
        "A user that is not on the group's allow-list logged in to the device. New or unknown "
        "accounts logging in can mean a compromised device or a backdoor account.",
        "Check where the account came from and who used it; remove or lock it if it is not "
        "expected, or add it to the allow-list if it is.",
    ),
    RuleType(
        20,
        "ProcessNotAllowed",
        "allowlist",
        AGENT,
        "Custom alert - A process was executed that is not allowed",
        "A process that is not on the group's allow-list was started on the device. Unknown "
        "executables can be malware, tooling left by an intruder or an unapproved update.",
        "Find the executable's origin and what started it; remove it and investigate the device "
        "if it is not approved, or add it to the allow-list if it is.",
    ),
]

RULE_TYPES: tuple[RuleType, ...] = tuple(_rules)
BY_NAME: dict[str, RuleType] = {r.name: r for r in RULE_TYPES}
BY_ID: dict[int, RuleType] = {r.id: r for r in RULE_TYPES}
RANGE_RULES: tuple[RuleType, ...] = tuple(r for r in RULE_TYPES if r.kind == "range")
ALLOWLIST_RULES: tuple[RuleType, ...] = tuple(r for r in RULE_TYPES if r.kind == "allowlist")

# Rule ids the decoders use.
C2D = {p: BY_NAME[f"{p.capitalize()}C2DMessagesNotInAllowedRange"].id for p in PROTOCOLS}
C2D_REJECTED = {
    p: BY_NAME[f"{p.capitalize()}C2DRejectedMessagesNotInAllowedRange"].id for p in PROTOCOLS
}
D2C = {p: BY_NAME[f"{p.capitalize()}D2CMessagesNotInAllowedRange"].id for p in PROTOCOLS}
DIRECT_METHODS = 10
FILE_UPLOADS = 11
QUEUE_PURGES = 12
TWIN_UPDATES = 13
UNAUTHORIZED = 14
ACTIVE_CONNECTIONS = 15
FAILED_LOGINS = 16
CONNECTION_TO_IP = 17
CONNECTION_FROM_IP = 18
LOCAL_USER = 19
PROCESS = 20

assert [r.id for r in RULE_TYPES] == list(range(1, 21))

# Pseudo rule ids: NOT rule types. Decoders put them in an event's ``rule`` for hub records whose
# protocol decides which per-protocol rule they count toward (SPEC §2, "Protocol of a hub
# message"); the evaluator recognises them, the store keeps them in ``events.rule`` like any id,
# and since ``rule_types`` has no row for them, exports show no rule name and count them toward
# no rule. Ids from 100 on stay clear of the rule types.
CONNECT = 100  # a device connected; ``value`` is the folded protocol (amqp, mqtt, http)
D2C_UNKNOWN = 101  # a device-to-cloud message that names no protocol; ``value`` is None
C2D_UNKNOWN = 102  # a cloud-to-device message that names no protocol; ``value`` is None
C2D_REJECT_UNKNOWN = 103  # a rejected cloud-to-device message, no protocol; ``value`` is None
PSEUDO_RULES = frozenset({CONNECT, D2C_UNKNOWN, C2D_UNKNOWN, C2D_REJECT_UNKNOWN})
# The per-protocol rule ids of each kind of message without a protocol.
BY_PROTOCOL = {D2C_UNKNOWN: D2C, C2D_UNKNOWN: C2D, C2D_REJECT_UNKNOWN: C2D_REJECTED}
