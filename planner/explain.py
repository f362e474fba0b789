"""Explaining infeasibility in domain words (placeholder; filled in below)."""
