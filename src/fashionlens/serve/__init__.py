"""fashionlens.serve."""
