"""Scores received images with the production model served by TorchServe."""
