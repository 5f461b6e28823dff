"""Cryptography adapters: ``cryptography``, and ``joserfc`` for JOSE; no home-made constructions."""
