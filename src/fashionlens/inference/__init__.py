"""fashionlens.inference."""
