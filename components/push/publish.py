"""Push a blessed SavedModel into the serving repository as the next version.

The copy is staged in a hidden sibling of the version directories and renamed into place, so
TF Serving (which ignores non-numeric entries) never sees a half-written version; the rename is
the push's last write, so a push that fails (a full or read-only volume) has published nothing.
A version number taken by a concurrent pusher between listing and renaming is detected by the
rename failing, and the next number is tried. A model whose blessing is not positive is refused
and nothing is written.

`push_step` is the push step of the pipeline around `push_model`: it reads the evaluate step's
blessing, pushes, and keeps the TF Serving config files of the push as the step's artifact.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from components import disk_faults
from components.step_log import progress
from contract import layout
from serving import tfs_config
from serving.repository import (
    SAVED_MODEL_PB,
    check_model_name,
    is_saved_model,
    numeric_versions,
    require_local,
)

STAGING_PREFIX = ".tmp-"
MAX_RENAME_ATTEMPTS = 100
# What os.rename of a directory raises when the target name is already in use.
_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR)


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What the pusher did.

    Args:
        pushed: whether a new version was written.
        version: the version number written, or None.
        uri: the version directory written, or None.
        reason: one sentence saying what happened and why.
        config_dir: where the TF Serving config files were written, or None.
    """

    pushed: bool
    version: int | None
    uri: str | None
    reason: str
    config_dir: str | None = None


def _blessing_reasons(blessing: Mapping) -> str:
    reasons = blessing.get("reasons") if isinstance(blessing, Mapping) else None
    if isinstance(reasons, list | tuple) and reasons:
        return "; ".join(str(r) for r in reasons)
    return "the blessing gives no reasons"


def _next_version(model_root: Path) -> int:
    versions = numeric_versions(model_root)
    return versions[-1][0] + 1 if versions else 1


def push_model(
    saved_model_dir: str,
    model_base: str,
    model_name: str,
    blessing: Mapping,
    serving_base: str = tfs_config.DEFAULT_SERVING_BASE,
    batching_profile: str = "gpu",
    config_copy: str | None = None,
) -> PushResult:
    """Copy the SavedModel at `saved_model_dir` to `<model_base>/<model_name>/<next version>/`.

    Refuses (pushed=False, nothing written) unless blessing["blessed"] is True.

    Args:
        saved_model_dir: directory holding saved_model.pb (and variables/, assets/...).
        model_base: root of the serving repository, a local or mounted path.
        model_name: the model's directory under model_base (the name TF Serving serves).
        blessing: the gate's verdict as a dict (the blessing JSON).
        serving_base: where the serving container mounts model_base; models.config points
            TF Serving at <serving_base>/<model_name>.
        batching_profile: "gpu" or "cpu", the batching.config written beside models.config.
        config_copy: a folder to copy the TF Serving config files into as well (the push
            step's artifact), before the version is published.

    The version directory is renamed into place last: a push that fails (a full or
    read-only volume) publishes no version, and leaves at most its hidden staging copy.

    After a successful push, `<model_base>/tfserving/` holds models.config (this model's
    entry added to or replaced in the existing file, other models kept), batching.config and
    monitoring.config, ready for `tensorflow_model_server --model_config_file=...`.
    """
    if not isinstance(blessing, Mapping) or blessing.get("blessed") is not True:
        got = blessing.get("blessed") if isinstance(blessing, Mapping) else blessing
        return PushResult(
            pushed=False,
            version=None,
            uri=None,
            reason=f"refused: the model is not blessed (blessed={got!r}): {_blessing_reasons(blessing)}",
        )
    source = require_local(saved_model_dir, "saved_model_dir")
    base = require_local(model_base, "model_base")
    check_model_name(model_name)
    # Fail on a bad profile or base before copying anything.
    tfs_config.model_config(model_name, serving_base)
    tfs_config.batching_text(batching_profile)
    if not is_saved_model(source):
        contents = sorted(p.name for p in source.iterdir())[:20] if source.is_dir() else None
        raise FileNotFoundError(
            f"{saved_model_dir} is not a SavedModel: no {SAVED_MODEL_PB} "
            + (f"(it contains {contents})" if contents is not None else "(no such directory)")
        )

    model_root = base / model_name
    model_root.mkdir(parents=True, exist_ok=True)
    staging = model_root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    config_dir = base / tfs_config.CONFIG_DIR
    try:
        try:
            shutil.copytree(source, staging)
        except OSError as err:
            err.add_note(f"while copying {source} to the staging directory {staging}")
            raise
        # Everything else is written before the version appears: once it is renamed into
        # place the push is done, and nothing left to write can fail it (and have a retry push
        # the model a second time).
        tfs_config.write_serving_configs(config_dir, model_name, serving_base, batching_profile)
        if config_copy is not None:
            _copy_configs(config_dir, config_copy)
        version = 0
        for _ in range(MAX_RENAME_ATTEMPTS):
            # Never retry a number that already failed, even if the listing still offers it.
            version = max(_next_version(model_root), version + 1)
            target = model_root / str(version)
            try:
                os.rename(staging, target)
            except OSError as err:
                # Another pusher (or a stray file) took this number first: try the next one.
                if err.errno in _TAKEN or os.path.lexists(target):
                    continue
                raise
            return PushResult(
                pushed=True,
                version=version,
                uri=str(target),
                reason=f"pushed {saved_model_dir} as version {version} of {model_name!r} at {target}",
                config_dir=str(config_dir),
            )
        raise RuntimeError(
            f"could not claim a version under {model_root} after {MAX_RENAME_ATTEMPTS} attempts: "
            "other pushers kept taking the next number"
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class PushOutputs(NamedTuple):
    """The push step's outputs, named as the component declares them."""

    pushed: bool
    pushed_uri: str
    reason: str


def push_step(
    model_dir: str,
    blessing_dir: str,
    serving_config_dir: str,
    model_base: str,
    model_name: str,
    serving_base: str,
    batching_profile: str,
) -> PushOutputs:
    """Push the SavedModel in `model_dir` (its saved_model/) if the blessing.json in
    `blessing_dir` says so, and copy the TF Serving config files written with the push into
    `serving_config_dir` (left empty when nothing is pushed). Prints what happened.

    A write that fails for want of space or write access (the serving repository, the
    step's artifact) exits with "push: error: <reason> while writing <path>: ..."
    (components/disk_faults.py); no version was published, and a retry pushes one."""
    with open(os.path.join(blessing_dir, layout.BLESSING_FILE), encoding="utf-8") as f:
        verdict = json.load(f)
    outputs = [model_base, serving_config_dir]

    def clear() -> list[str]:  # the staging copy is push_model's to remove
        names = (tfs_config.MODELS_CONFIG, tfs_config.BATCHING_CONFIG, tfs_config.MONITORING_CONFIG)
        return disk_faults.remove([os.path.join(serving_config_dir, name) for name in names])

    with disk_faults.reported("push", outputs, clear):
        os.makedirs(serving_config_dir, exist_ok=True)
        result = push_model(
            os.path.join(model_dir, layout.SAVED_MODEL_DIR),
            model_base,
            model_name,
            verdict,
            serving_base=serving_base,
            batching_profile=batching_profile,
            config_copy=serving_config_dir,
        )
    progress(("" if result.pushed else "skipped: ") + result.reason)
    if result.config_dir:
        print(f"TF Serving config: {result.config_dir}")
    return PushOutputs(result.pushed, result.uri or "", result.reason)


def _copy_configs(config_dir: Path, destination: str) -> None:
    """The TF Serving config files of `config_dir` (not hidden ones) into `destination`."""
    os.makedirs(destination, exist_ok=True)
    for name in sorted(os.listdir(config_dir)):
        if not name.startswith("."):
            shutil.copy2(config_dir / name, destination)
