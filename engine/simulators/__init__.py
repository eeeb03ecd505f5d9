"""Simulated devices that write the wire formats iotwatch reads."""
