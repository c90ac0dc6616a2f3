"""Command-line interface for beautyspot (kept import-free so completion stays fast)."""
