"""`python -m components.evaluate report PATH [--html out.html]` (see components/evaluate/cli.py)."""

from components.evaluate.cli import cli

if __name__ == "__main__":
    cli()
