"""fashionlens.labels."""
