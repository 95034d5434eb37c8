"""Training: the loop, its checkpoints, the distributed plumbing and metric tracking."""
