"""Training one model: losses, the trainer, rollouts, the `train` command's loop."""
