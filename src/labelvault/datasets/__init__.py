"""Datasets: import formats, streaming parsers and import limits."""
