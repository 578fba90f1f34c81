"""Annotation: label schemas and validation of annotation results."""
