"""iotwatch console (Textual) and command line."""
