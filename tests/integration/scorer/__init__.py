"""Integration tests of the scorer against the real local stack."""
