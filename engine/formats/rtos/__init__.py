"""The Azure RTOS security message schema (``security_message.fbs``) and its flatc-generated code."""
