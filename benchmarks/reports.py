"""What every benchmark does with its report: print it, and write it to `--out` when given;
and how a report names the reference tree it was measured against."""

from __future__ import annotations

import os
import subprocess

import click


def print_and_save(report: str, out: str | None) -> None:
    click.echo(report)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(report)


def reference_tree_argument(tree: str) -> str:
    """A report's `--reference-tree` argument, naming the commit the tree was checked out at
    so that the command can be repeated."""
    commit = subprocess.run(
        ["git", "-C", tree, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f" --reference-tree DIR  # DIR: git worktree add DIR {commit}"
