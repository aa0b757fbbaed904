"""Tests candidate models through TorchServe and promotes only better ones."""
