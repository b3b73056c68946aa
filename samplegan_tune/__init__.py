"""samplegan-tune: hyperparameter search for autoencoder-seeded raw-audio GANs."""

__version__ = "0.1.0"
