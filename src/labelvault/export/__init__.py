"""Exports of labelled data: request, approval, background build, one-time download."""
