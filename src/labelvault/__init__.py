"""LabelVault: a secure, multi-tenant platform for producing AI training data."""

__version__ = "0.1.0"
