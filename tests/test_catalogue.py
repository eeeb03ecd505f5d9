"""SPEC §1: every alert's display name is Defender for IoT's, character for character.

The 19 names of Defender's custom-alert tables, as Microsoft documents them:

- "Defender for IoT Hub custom security alerts", MicrosoftDocs/azure-docs
  ``articles/defender-for-iot/device-builders/concept-customizable-security-alerts.md``
  (learn.microsoft.com/azure/defender-for-iot/device-builders/concept-customizable-security-alerts),
  the 14 IoT Hub alerts;
- "Defender for IoT devices custom security alerts", the same repository,
  ``articles/defender-for-iot/device-builders/agent-based-security-custom-alerts.md``, the 5
  agent-based alerts;

and ``ConnectionFromIpNotAllowed``, which is in the Azure API but not in those tables, worded as
SPEC §1 gives it. Operators filter Log Analytics on these names, so they are compared exactly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine import catalogue as c
from engine.store import Store

DEFENDER_NAMES = {
    "AmqpC2DMessagesNotInAllowedRange": "Custom alert - The number of cloud to device messages in AMQP protocol is outside the allowed range",
    "MqttC2DMessagesNotInAllowedRange": "Custom alert - The number of cloud to device messages in MQTT protocol is outside the allowed range",
    "HttpC2DMessagesNotInAllowedRange": "Custom alert - The number of cloud to device messages in HTTP protocol is outside the allowed range",
    "AmqpC2DRejectedMessagesNotInAllowedRange": "Custom alert - The number of rejected cloud to device messages in AMQP protocol is outside the allowed range",
    "MqttC2DRejectedMessagesNotInAllowedRange": "Custom alert - The number of rejected cloud to device messages in MQTT protocol is outside the allowed range",
    "HttpC2DRejectedMessagesNotInAllowedRange": "Custom alert - The number of rejected cloud to device messages in HTTP protocol is not in the allowed range",
    "AmqpD2CMessagesNotInAllowedRange": "Custom alert - The number of device to cloud messages in AMQP protocol is outside the allowed range",
    "MqttD2CMessagesNotInAllowedRange": "Custom alert - The number of device to cloud messages in MQTT protocol is outside the allowed range",
    "HttpD2CMessagesNotInAllowedRange": "Custom alert - The number of device to cloud messages in HTTP protocol is outside the allowed range",
    "DirectMethodInvokesNotInAllowedRange": "Custom alert - The number of direct method invokes is outside the allowed range",
    "FileUploadsNotInAllowedRange": "Custom alert - The number of file uploads is outside the allowed range",
    "QueuePurgesNotInAllowedRange": "Custom alert - The number of command queue purges that are outside of the allowed range",
    "TwinUpdatesNotInAllowedRange": "Custom alert - The number of module twin updates is outside the allowed range",
    "UnauthorizedOperationsNotInAllowedRange": "Custom alert - The number of unauthorized operations is outside the allowed range",
    "ActiveConnectionsNotInAllowedRange": "Custom alert - The number of active connections is outside the allowed range",
    "FailedLocalLoginsNotInAllowedRange": "Custom alert - The number of failed local logins is outside the allowed range",
    "ConnectionToIpNotAllowed": "Custom alert - The outbound connection created to an IP that isn't allowed",
    "ConnectionFromIpNotAllowed": "Custom alert - The inbound connection created from an IP that isn't allowed",
    "LocalUserNotAllowed": "Custom alert - The sign in of a user that is not on the allowed user list",
    "ProcessNotAllowed": "Custom alert - A process was executed that is not allowed",
}


def test_display_names_are_defenders_exactly() -> None:
    assert len(DEFENDER_NAMES) == 20
    assert {r.name: r.display_name for r in c.RULE_TYPES} == DEFENDER_NAMES


def test_pseudo_rule_ids_are_no_rule_types() -> None:
    assert {c.CONNECT, c.D2C_UNKNOWN, c.C2D_UNKNOWN, c.C2D_REJECT_UNKNOWN} == c.PSEUDO_RULES
    assert (c.CONNECT, c.D2C_UNKNOWN, c.C2D_UNKNOWN, c.C2D_REJECT_UNKNOWN) == (100, 101, 102, 103)
    assert not c.PSEUDO_RULES & set(c.BY_ID)


async def test_an_older_database_takes_the_new_names(tmp_path: Path) -> None:
    """A database made before the names were corrected gets them when it is migrated."""
    db = tmp_path / "old.db"
    store = await Store.open(db)
    await store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE rule_types SET display_name = 'old name'")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute("DROP TABLE hub_records")
        conn.execute("ALTER TABLE quarantine DROP COLUMN part")
    store = await Store.open(db)
    await store.close()
    with sqlite3.connect(db) as conn:
        names = dict(conn.execute("SELECT name, display_name FROM rule_types"))
    assert names == DEFENDER_NAMES
