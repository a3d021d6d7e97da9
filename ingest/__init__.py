"""Scanning, decoding, tag reading and the per-track analysis pipeline.

Uses ``embeddings`` to analyse and writes through ``catalog``.
"""
