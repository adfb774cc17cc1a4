"""What every benchmark does with its report: print it, and write it to `--out` when given."""

from __future__ import annotations

import os

import click


def print_and_save(report: str, out: str | None) -> None:
    click.echo(report)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(report)
