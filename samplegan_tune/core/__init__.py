"""Foundations every stage uses: errors, atomic file writes, the training config, locks."""
