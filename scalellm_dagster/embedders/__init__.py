"""Embedders: text -> L2-normalised float32 vectors, one per corpus row."""
