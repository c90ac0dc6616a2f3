"""beautyspot: a task database for cached Python function results, and its maintenance tool."""

__version__ = "0.1.0"
