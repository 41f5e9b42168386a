"""fashionlens.metrics."""
