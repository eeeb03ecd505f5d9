"""Input format decoders."""
