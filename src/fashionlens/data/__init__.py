"""fashionlens.data."""
