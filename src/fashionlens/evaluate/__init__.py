"""fashionlens.evaluate: scoring trained models (evaluate; compare with bootstrap intervals), the seeds'
tables and plots, and the study helpers the tools share. Training lives in fashionlens.train."""
