"""``python -m pixmill`` runs the CLI."""

from .cli import main

main()
