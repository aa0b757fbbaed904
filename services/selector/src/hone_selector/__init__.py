"""Chooses which scored images people should label, within a review budget."""
