"""Training: mesh and shardings, optimizer, checkpoints, the SFT loop and evaluation."""
