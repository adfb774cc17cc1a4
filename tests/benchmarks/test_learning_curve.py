"""The learning curve gathers every size's paper_tables metrics into one table and a plot."""

import importlib.util
import os

import pandas as pd
from click.testing import CliRunner

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "learning_curve.py")
_spec = importlib.util.spec_from_file_location("learning_curve", _PATH)
learning_curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning_curve)


def _metrics(folder, rows):
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["model", "metric", "mean", "std", "seeds"]).to_csv(
        folder / "metrics.csv", index=False
    )


def test_the_sizes_become_one_table_and_a_plot(tmp_path):
    _metrics(
        tmp_path / "q250",
        [
            ("mlpr", "human/ndcg@5", 0.91, 0.01, 3),
            ("zero-shot all-minilm-l6-v2", "human/ndcg@5", 0.92, 0.0, 1),
            ("mlpr", "click/auc", 0.6, 0.0, 3),  # not a curve's metric
        ],
    )
    _metrics(
        tmp_path / "q1000",
        [
            ("mlpr", "human/ndcg@5", 0.945, 0.002, 3),
            ("zero-shot all-minilm-l6-v2", "human/ndcg@5", 0.9425, 0.0, 1),
            ("xgboost", "purchase/ndcg@5", 0.78, 0.004, 3),
        ],
    )
    result = CliRunner().invoke(
        learning_curve.main,
        [
            "--sizes",
            "250,500,1000",
            "--models",
            "mlpr,xgboost",
            "--out",
            str(tmp_path),
            "--plot-only",
        ],
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "learning_curve.md").read_text()
    assert "| model | 250 q | 1000 q |" in text  # 500 was not run: no column
    assert "| mlpr | 0.9100 ± 0.0100 | 0.9450 ± 0.0020 |" in text
    assert "| zero-shot all-minilm-l6-v2 | 0.9200 ± 0.0000 | 0.9425 ± 0.0000 |" in text
    assert "| model | 1000 q |\n|---|---|\n| xgboost | 0.7800 ± 0.0040 |" in text
    assert "click/auc" not in text
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.read_csv(tmp_path / "learning_curve.csv")
    assert sorted(frame["queries"].unique()) == [250, 1000] and len(frame) == 5
