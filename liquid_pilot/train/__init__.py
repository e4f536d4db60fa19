"""Imitation training from bags, and the offline replay check."""
