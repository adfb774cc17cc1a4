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


def settings_note(config, what: str = "Training") -> str:
    """A report's line on what `config` (a TrainConfig) changes from the pipeline's training
    settings (components/train/config.train_config), value by value (the folders of the
    text cache and the backup left out)."""
    from components.train.config import changed_settings

    # Where the caches and the backup go changes no model.
    changed = {
        name: values
        for name, values in changed_settings(config).items()
        if name not in ("text_cache_dir", "backup_dir")
    }
    if not changed:
        return f"{what}: the pipeline's default settings."
    return (
        f"{what}: the pipeline's default settings but "
        + ", ".join(
            f"{name} {value!r} (default {default!r})" for name, (default, value) in changed.items()
        )
        + "."
    )
