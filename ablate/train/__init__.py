"""Training: losses, optimizers, the training loop, evaluation and metrics of one run."""
