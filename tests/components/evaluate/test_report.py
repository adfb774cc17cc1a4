"""The report as text and as HTML, built from scored splits (no model, no browser)."""

import base64
import re

import pytest
from evaluate_testlib import FOUR_TASKS, ranking_rows, scored_split, synthetic_report

from components.evaluate.report import EvaluationReport
from components.evaluate.report_html import render_html
from components.evaluate.report_text import render_text

ROWS = ranking_rows(40, 6, seed=0)


@pytest.fixture(scope="module")
def report():
    # A candidate that ranks by the signal against a champion that ranks at random.
    return synthetic_report(
        scored_split(ROWS, lambda x, d: x), scored_split(ROWS, lambda x, d: d), force_push=False
    )


@pytest.fixture(scope="module")
def first_run():
    return synthetic_report(scored_split(ROWS, lambda x, d: x), None)


def rows_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_text_has_every_section_with_the_numbers(report):
    text = render_text(report)
    for title in (
        "MLPR evaluation report",
        "Verdict: BLESSED",
        "Gate checks (every check, with its value and threshold)",
        "Candidate vs champion on the test split",
        "Paired NDCG@5 per query (candidate - champion, queries with a positive label)",
        "Confusion matrices of the candidate (threshold: the one that maximises F1 on the test split)",
        "NDCG@k, k = 1..10",
        "Calibration of the candidate",
        "Metrics by impression-count percentile group of the test pairs (champion in brackets)",
    ):
        assert title in text, title
    candidate, champion = report.candidate_metrics, report.champion_metrics
    auc, old = candidate["purchase/auc"], champion["purchase/auc"]
    assert ["purchase", "auc", f"{auc:.4f}", f"{old:.4f}", f"{auc - old:+.4f}"] in rows_of(text)
    paired = report.paired["purchase"]
    row = next(r for r in rows_of(text) if r[:2] == ["purchase", str(paired["queries"])])
    assert row[2] == f"{paired['mean_difference']:+.4f}"
    assert row[4] == f"[{paired['ci_low']:+.4f}," and row[5] == f"{paired['ci_high']:+.4f}]"
    assert " ".join(row[7:]) == "candidate significantly better"
    # Confusion matrix counts add up to the split: 40 queries x 6 products.
    (tn, fp), (fn, tp) = report.candidate.tasks["click"].confusion.matrix
    click = next(r for r in rows_of(text) if r[:1] == ["click"] and len(r) == 6)
    assert [int(v) for v in click[2:]] == [tn, fp, fn, tp] and tn + fp + fn + tp == 240


def test_first_run_text_says_there_is_no_champion(first_run):
    text = render_text(first_run)
    assert "champion:   none (first run: nothing is served yet)" in text
    assert "no champion: nothing to compare with" in text
    assert "Candidate on the test split" in text
    assert {r[1] for r in rows_of(text) if r and r[0] == "pass"} == {"floor"}


def test_html_is_self_contained_with_sections_plots_and_numbers(report):
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == [
        "Candidate vs champion on the test split",
        "Paired NDCG@5 per query (candidate &minus; champion)",
        "Gate checks",
        "ROC per task",
        "NDCG@k per task",
        "Calibration per task",
        "Confusion matrices of the candidate",
        "Metrics by impression-count group",
        "AUC and NDCG@5 by impression group",
    ]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n") for i in images)
    # Nothing is fetched from elsewhere: no links, scripts or external sources.
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page
    assert '<div class="verdict blessed">BLESSED</div>' in page
    auc = report.candidate_metrics["click/auc"]
    difference = auc - report.champion_metrics["click/auc"]
    assert f"<td>{auc:.4f}</td>" in page
    assert f'<span class="better">{difference:+.4f}</span>' in page
    p_value = report.paired["purchase"]["p_value"]
    assert f"<td>{p_value:.4g}</td>" in page
    # Paths are escaped, not interpreted as markup.
    assert "/runs/&lt;candidate&gt;/saved_model" in page


def test_html_of_a_refusal_and_a_forced_push():
    candidate, champion = scored_split(ROWS, lambda x, d: d), scored_split(ROWS, lambda x, d: x)
    refused = render_html(synthetic_report(candidate, champion))
    assert '<div class="verdict refused">NOT BLESSED</div>' in refused
    assert '<span class="fail">fail</span>' in refused
    forced = synthetic_report(candidate, champion, force_push=True)
    assert forced.blessing["forced"] is True
    assert "Verdict: BLESSED (FORCED)" in render_text(forced)


def test_written_report_reads_back_the_same(tmp_path, report):
    path = report.write(str(tmp_path))
    again = EvaluationReport.read(path)
    assert again.to_dict() == report.to_dict()
    assert render_text(again) == render_text(report)


def test_reading_something_else_is_a_clear_error(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"blessed": true}')
    with pytest.raises(ValueError, match="not an evaluation report: it lacks"):
        EvaluationReport.read(str(path))
    path.write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        EvaluationReport.read(str(path))


def test_a_split_with_markets_gets_a_table_per_market():
    import dataclasses

    import numpy as np

    def with_markets(scored):
        market = np.array(["de" if q.endswith(("0", "2", "4")) else "us" for q in scored.query])
        return dataclasses.replace(scored, market=market)

    candidate = with_markets(scored_split(ROWS, lambda x, d: x))
    report = synthetic_report(candidate, with_markets(scored_split(ROWS, lambda x, d: d)))
    text = render_text(report)
    assert "Metrics by market of the test pairs (champion in brackets)" in text
    de = report.candidate.market_groups[0]
    row = next(r for r in rows_of(text) if r[:1] == ["de"])
    assert row[1:3] == [str(de.pairs), str(de.queries)]
    assert row[3] == f"{de.metrics['click/auc']:.3f}"
    assert "<h2>Metrics by market</h2>" in render_html(report)
    # Without markets neither report has the section.
    assert "by market" not in render_text(
        synthetic_report(scored_split(ROWS, lambda x, d: x), None)
    )


def test_the_relevance_label_gets_rows_beside_the_tasks(report):
    import dataclasses

    with_relevance = dataclasses.replace(
        report,
        candidate_metrics={**report.candidate_metrics, "relevance/ndcg@5": 0.8125},
        champion_metrics={**report.champion_metrics, "relevance/ndcg@5": 0.75},
    )
    assert ["relevance", "ndcg@5", "0.8125", "0.7500", "+0.0625"] in rows_of(
        render_text(with_relevance)
    )
    assert '<td class="text">relevance</td>' in render_html(with_relevance)
    assert not any(r[:1] == ["relevance"] for r in rows_of(render_text(report)))


class TestFunnels:
    """The report has a row per task and a plot panel per task, for any funnel."""

    @pytest.fixture(scope="class")
    def four(self):
        return synthetic_report(
            scored_split(ROWS, lambda x, d: x, FOUR_TASKS),
            scored_split(ROWS, lambda x, d: d, FOUR_TASKS),
        )

    @staticmethod
    def panels(report, monkeypatch) -> dict[str, list[str]]:
        """The panel titles of each figure of the HTML page."""
        from components.evaluate import plots

        figures = []
        monkeypatch.setattr(plots, "_png", lambda figure: figures.append(figure) or "")
        render_html(report)
        return {
            name: [axis.get_title() for axis in figure.axes]
            for name, figure in zip(
                ("roc", "ndcg", "calibration", "impressions"), figures, strict=True
            )
        }

    def test_four_tasks_get_rows_and_panels(self, four, monkeypatch):
        names = ["click", "favorite", "atc", "purchase"]
        assert four.tasks == tuple(names)
        text = rows_of(render_text(four))
        for task in names:
            assert any(r[:2] == [task, "ndcg@10"] for r in text)
            assert any(r[:2] == [task, str(four.paired[task]["queries"])] for r in text)
        assert four.candidate_metrics["favorite/auc"] > 0.7
        favorite = next(r for r in text if r[:2] == ["favorite", "auc"])
        assert favorite[2] == f"{four.candidate_metrics['favorite/auc']:.4f}"
        assert "favorite/auc" in render_text(four).split("impression-count")[1]
        page = render_html(four)
        assert (
            page.count('<td class="text">favorite</td>') == 4 + 1 + 1
        )  # metrics, paired, confusion
        panels = self.panels(four, monkeypatch)
        assert panels["roc"] == [f"ROC: {t}" for t in names]
        assert panels["ndcg"] == [f"NDCG@k: {t}" for t in names]
        assert panels["calibration"] == [f"Calibration by decile: {t}" for t in names]
        assert panels["impressions"] == [f"By impression group: {t}" for t in names]

    def test_the_figures_widen_with_the_tasks(self, four, first_run):
        from components.evaluate import plots

        def width(png: str) -> int:
            return int.from_bytes(base64.b64decode(png)[16:20], "big")  # the PNG header's

        assert width(plots.roc_figure(four)) == pytest.approx(
            width(plots.roc_figure(first_run)) * 4 / 3, abs=2
        )

    def test_one_task(self, monkeypatch):
        one = synthetic_report(
            scored_split(ROWS, lambda x, d: x, FOUR_TASKS[:1]),
            scored_split(ROWS, lambda x, d: d, FOUR_TASKS[:1]),
            significance="better",
        )
        assert one.tasks == ("click",)
        assert one.blessing["settings"]["significance_metric"] == "click/ndcg@5"
        text = render_text(one)
        assert {r[0] for r in rows_of(text) if r[1:2] == ["auc"]} == {"click"}
        assert "atc" not in text and "purchase" not in text
        panels = self.panels(one, monkeypatch)
        assert panels["roc"] == ["ROC: click"] and panels["impressions"] == [
            "By impression group: click"
        ]
