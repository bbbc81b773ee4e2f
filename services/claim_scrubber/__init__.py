"""Claim scrubber: scrubs claim events for HCPCS Q4390 and claim integrity, exactly once."""

__all__ = ["__version__"]

__version__ = "1.0.0"
