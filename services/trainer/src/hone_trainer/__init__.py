"""Keeps the labelled dataset and trains candidate models on a schedule."""
