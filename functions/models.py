"""Tenant-schema models for functions; filled by the functions issue."""
