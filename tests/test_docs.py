"""The documentation site builds with `mkdocs build --strict` (a broken link, anchor, nav entry
or API reference fails it), every page of the nav is in the built site, the API pages hold the
docstrings, the benchmarks' plots are on the site, and the README points into the docs."""

from __future__ import annotations

import ast
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLOT = "benchmarks/results/learning_curve_homedepot/learning_curve.png"


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` with the mkdocs installed beside this Python."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
        + ["--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _nav_pages(nav) -> list[str]:
    """The Markdown pages of an mkdocs nav, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    raise TypeError(f"unexpected nav entry: {nav!r}")


def _url(page: str) -> str:
    """A page's URL in the site (use_directory_urls): x.md -> x/, a/index.md -> a/."""
    stem = page.removesuffix(".md")
    if stem == "index" or stem.endswith("/index"):
        return stem.removesuffix("index")
    return f"{stem}/"


def _built_path(site: Path, page: str) -> Path:
    """Where mkdocs writes `page`: x.md -> x/index.html."""
    return site / _url(page) / "index.html"


def _text(page: Path) -> str:
    """A built page's visible text, tags removed and entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text("utf-8"))).split())


def _config() -> dict:
    with open(ROOT / "mkdocs.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    done = _mkdocs_build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return site


def test_every_page_of_the_nav_is_built_and_every_docs_page_is_in_the_nav(site):
    pages = _nav_pages(_config()["nav"])
    assert len(pages) == len(set(pages)), "a page is twice in the nav"
    for page in pages:
        assert (DOCS / page).is_file(), f"{page} is in the nav but not in docs/"
        built = _built_path(site, page)
        assert built.is_file(), f"{page} was not built to {built}"
        title = (DOCS / page).read_text("utf-8").splitlines()[0].removeprefix("# ")
        assert re.sub(r"`", "", title) in _text(built), f"{built} lacks its title {title!r}"
    written = {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if "hooks" not in path.relative_to(DOCS).parts
    }
    assert written == set(pages), f"pages outside the nav: {sorted(written - set(pages))}"


def test_the_search_index_holds_every_page(site):
    index = json.loads((site / "search" / "search_index.json").read_text("utf-8"))
    titled = {entry["location"]: entry["title"] for entry in index["docs"]}
    for page in _nav_pages(_config()["nav"]):
        title = (DOCS / page).read_text("utf-8").splitlines()[0].removeprefix("# ")
        assert titled.get(_url(page)) == title, f"{page}: {titled.get(_url(page))!r}"
    assert any("dead_letter/" in entry["text"] for entry in index["docs"])


def _first_docstring_line(path: Path, qualname: str) -> str:
    """The first line of a class's or function's docstring, read from the source."""
    node: ast.AST = ast.parse(path.read_text("utf-8"))
    for name in qualname.split("."):
        node = next(
            child
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.ClassDef | ast.FunctionDef) and child.name == name
        )
    return ast.get_docstring(node).splitlines()[0]


@pytest.mark.parametrize(
    ("page", "source", "qualname"),
    [
        ("api/evaluate.md", "components/evaluate/gate_config.py", "GateConfig"),
        ("api/evaluate.md", "components/evaluate/metrics.py", "ndcg_at_k"),
        ("api/layers.md", "model/experts.py", "MultiGateExperts"),
        ("api/model.md", "model/config.py", "RankerConfig"),
        ("api/serving-client.md", "serving/client.py", "RankingClient"),
    ],
)
def test_an_api_page_holds_the_objects_docstring(site, page, source, qualname):
    module = source.removesuffix(".py").replace("/", ".")
    built = _built_path(site, page)
    markup = built.read_text("utf-8")
    assert f'id="{module}.{qualname}"' in markup, f"{module}.{qualname} has no heading on {page}"
    assert _first_docstring_line(ROOT / source, qualname) in _text(built)


def test_a_documented_parameter_is_rendered_in_its_table(site):
    # RankerConfig's Args become a table of parameters: name, type, description, default.
    tree = ast.parse((ROOT / "model" / "config.py").read_text("utf-8"))
    field = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "projection_dim"
    )
    row = (
        f"projection_dim {ast.unparse(field.annotation)} width of the query and product "
        f"projections phi(q), psi(i). {ast.unparse(field.value)}"
    )
    assert row in _text(_built_path(site, "api/model.md"))


def test_the_benchmarks_plot_is_on_the_site_and_the_page_shows_it(site):
    copied = site / PLOT
    assert copied.read_bytes() == (ROOT / PLOT).read_bytes()
    page = _built_path(site, "benchmarks.md")
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text("utf-8"))
    shown = {os.path.normpath(page.parent / src) for src in sources}
    assert str(copied) in shown, f"benchmarks page images: {sources}"


def _hook():
    spec = importlib.util.spec_from_file_location(
        "benchmark_results", DOCS / "hooks" / "benchmark_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_lists_the_images_of_benchmarks_results_only(tmp_path):
    hook = _hook()
    results = tmp_path / "benchmarks" / "results"
    (results / "run").mkdir(parents=True)
    for name in ("curve.png", "plot.SVG", "tables.md", "rows.csv"):
        (results / "run" / name).write_bytes(b"x")
    (tmp_path / "benchmarks" / "elsewhere.png").write_bytes(b"x")
    assert [p.as_posix() for p in hook.benchmark_images(tmp_path)] == [
        "benchmarks/results/run/curve.png",
        "benchmarks/results/run/plot.SVG",
    ]
    assert PLOT in [p.as_posix() for p in hook.benchmark_images(ROOT)]
    with pytest.raises(FileNotFoundError, match="no benchmark results folder"):
        hook.benchmark_images(tmp_path / "nowhere")


def test_the_site_settings_make_a_broken_link_or_anchor_fail_the_build(tmp_path):
    # A two-page site with the project's theme and validation settings: a link to a missing
    # page and one to a missing anchor must each stop a strict build.
    config = _config()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n## Known\n", "utf-8")
    site_config = {
        "site_name": "check",
        "theme": config["theme"],
        "validation": config["validation"],
        "nav": ["index.md", "other.md"],
    }
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(site_config), "utf-8")
    for link, message in [
        ("[gone](missing.md)", "missing.md"),
        ("[nowhere](index.md#unknown-anchor)", "unknown-anchor"),
    ]:
        (tmp_path / "docs" / "other.md").write_text(f"# Other\n\n{link}\n", "utf-8")
        done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
        assert done.returncode != 0, f"{link} did not fail the build:\n{done.stderr}"
        assert message in done.stderr
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n[known](index.md#known)\n", "utf-8")
    done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr


def test_the_readme_is_short_keeps_the_two_commands_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) <= 150
    assert (
        "```bash\n"
        "./dev demo   # set everything up, then run the whole pipeline locally on the embedded"
        " demo data\n"
        "./dev test   # set everything up, then lint and run the test suite (unit + end-to-end)\n"
        "```\n"
    ) in readme
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "the README links no docs page"
    for link in links:
        assert (ROOT / link).is_file(), f"README links {link}, which does not exist"
    assert "docs/getting-started.md" in links
