"""Listening: features, the music embedding, metrics, the score, collapse detectors, scale."""
