"""The pure core: parties and schemes, agreements and their lifecycle, labels, the release engine.

Nothing in this package reads a clock, a file, a socket or a database: time is an
argument, and time zones arrive as ``tzinfo`` objects built at the boundary.
"""
