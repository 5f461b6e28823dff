"""``python -m gsomia`` runs the command line."""

from gsomia.cli import main

main()
