"""The serving model repository, in the layout TF Serving watches.

`<model_base>/<model_name>/<version>/` where `version` is a positive integer directory holding
a SavedModel. TF Serving serves the highest version and ignores entries that are not numeric,
which is what lets the pusher stage a copy in a hidden sibling before renaming it into place.
Only local or mounted filesystems (a PVC on Kubeflow) are supported.
"""

from __future__ import annotations

import os
from pathlib import Path

SAVED_MODEL_PB = "saved_model.pb"


def require_local(uri: str, what: str) -> Path:
    """`uri` as a local path; object-store URIs (gs://, s3://, ...) are rejected."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"{what} must be a non-empty path, got {uri!r}")
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ValueError(
            f"{what} {uri!r} is a {scheme}:// URI; object stores are not supported by this "
            "pusher yet. Use a local or mounted path (for example a PVC mounted in the pod)."
        )
    return Path(uri)


def check_model_name(model_name: str) -> None:
    if (
        not isinstance(model_name, str)
        or not model_name
        or model_name.startswith(".")
        or os.sep in model_name
        or (os.altsep is not None and os.altsep in model_name)
    ):
        raise ValueError(
            f"model_name must be a plain directory name (no separators, not hidden), got {model_name!r}"
        )


def is_saved_model(path: Path) -> bool:
    return (path / SAVED_MODEL_PB).is_file()


def numeric_versions(model_root: Path) -> list[tuple[int, Path]]:
    """Every positive integer version directory under `model_root`, in increasing order.

    Non-numeric entries (hidden staging directories, notes, junk) are ignored, as TF Serving
    ignores them. A missing `model_root` has no versions.
    """
    if not model_root.is_dir():
        return []
    versions = []
    for entry in model_root.iterdir():
        name = entry.name
        if name.isascii() and name.isdigit() and int(name) > 0 and entry.is_dir():
            versions.append((int(name), entry))
    return sorted(versions)


def champion_version(model_root: Path) -> tuple[int, Path] | None:
    """The highest version that holds a SavedModel, or None when there is none."""
    for version, path in reversed(numeric_versions(model_root)):
        if is_saved_model(path):
            return version, path
    return None
