"""Quality: inter-annotator agreement and gold accuracy (pure statistics)."""
