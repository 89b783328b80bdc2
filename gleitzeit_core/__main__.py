"""``python -m gleitzeit_core`` runs the command line."""

from ._cli import main

main()
