"""Training: data, sampling, losses, the loop, checkpoints and data-parallel replicas."""
