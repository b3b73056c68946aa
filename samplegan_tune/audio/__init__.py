"""Audio in: reading and writing sound, the training corpus, the synthetic songs."""
