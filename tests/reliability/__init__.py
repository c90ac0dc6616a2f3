"""Reliability and security scenarios of issue 6 (see RELIABILITY.md)."""
