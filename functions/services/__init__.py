"""Writes about functions (CONVENTIONS.md 2), one module per entity group."""
