"""``python -m ltrans`` runs the CLI."""

from ltrans.cli import main

main()
