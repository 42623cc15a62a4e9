"""Compression: architecture sizing, magnitude pruning, INT8 conversion, and honest size accounting."""
