"""Unit tests of the scorer."""
