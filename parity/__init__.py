"""Parity suite: NumPy and PyTorch agree, and any port can prove it does (SPEC §9.7, §10)."""
