"""An mkdocs hook (mkdocs.yml `hooks:`) that puts the benchmarks' plots on the site.

The plots stay in `benchmarks/results/`, beside the reports and the commands that made them;
mkdocs serves only what is inside `docs_dir`. Rather than keep a copy in `docs/` (which would
go stale when a benchmark is rerun) or link to files outside the site, the hook adds every
image under `benchmarks/results/` to the site's files at its repository path. A page links
it as `benchmarks/results/<folder>/<plot>.png` (relative to `docs/`); mkdocs then checks that
link like any other, and `mkdocs serve` picks up a regenerated plot.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = Path("benchmarks") / "results"
IMAGE_SUFFIXES = frozenset({".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"})


def benchmark_images(root: Path) -> list[Path]:
    """The image files under `root`/benchmarks/results, relative to `root`, sorted."""
    results = root / RESULTS
    if not results.is_dir():
        raise FileNotFoundError(f"no benchmark results folder at {results}")
    return sorted(
        path.relative_to(root)
        for path in results.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds the benchmarks' images to the site, each at its repository path."""
    root = Path(config.config_file_path).resolve().parent
    for image in benchmark_images(root):
        files.append(File.generated(config, image.as_posix(), abs_src_path=str(root / image)))
    return files
