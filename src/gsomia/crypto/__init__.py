"""Cryptography adapters, all built on the ``cryptography`` package (no home-made constructions)."""
