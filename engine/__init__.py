"""iotwatch engine: everything without a UI."""
