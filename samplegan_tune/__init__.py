"""samplegan-tune: hyperparameter search for autoencoder-seeded raw-audio GANs.

The package is laid out by pipeline stage, in the order data flows; a module imports only
from its own stage or the stages before it (tests/test_imports.py checks this):

    core     errors, atomic file writes, the training config, locks
    audio    sound in and out, the training corpus, the synthetic songs
    models   the two model families, their checkpoints and exports
    judge    features, the music embedding, metrics, the score, collapse detectors
    train    losses, the trainer, rollouts, the `train` command's loop
    tuning   spaces, trials, the Ray Tune glue, the final fit, ranking, the leaderboard
    report   the listening page, its figures, the export
    cli      the `samplegan-tune` command line
"""

from samplegan_tune.core import moved

__version__ = "0.1.0"
LAYERS = ("core", "audio", "models", "judge", "train", "tuning", "report", "cli")

moved.install()  # experiments started before the layout still resume (core/moved.py)
