"""How far above the zero-shot cosine can any ranker over a frozen encoder go?

On the prepared Home Depot splits of `paper_tables.py` (same sample, same test queries), this
scores the test pairs by gradient-boosted trees over the features a frozen-encoder ranker has
in common: the zero-shot cosine of the encoder's query and product vectors and the ranking
features. The trees are trained on the train split against, in turn:

- each engagement target a ranker can learn from (clicks > 0, clicks per impression, and that
  rate divided by the click model's examination probability, i.e. with the position bias taken
  out);
- the human grades themselves, which no ranker in production has: an upper reference for what
  these features can give.

NDCG@5 against the human grades is then compared, query by query, with the zero-shot cosine
alone (paired t-test), as paper_tables does.

    .venv/bin/python benchmarks/frozen_headroom.py --work /tmp/hd/work --out benchmarks/results/homedepot_minilm_ablations/frozen_headroom.md
"""

from __future__ import annotations

import os
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@click.command()
@click.option("--queries", default=3000, show_default=True)
@click.option("--encoder-preset", default="all-minilm-l6-v2", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds of the trees.")
@click.option(
    "--work", required=True, help="A paper_tables.py --work folder (prepared here if empty)."
)
@click.option("--out", required=True, help="The Markdown report to write.")
def main(queries, encoder_preset, seeds, work, out) -> None:
    import xgboost as xgb
    from paper_tables import human_grades, prepare

    from components.evaluate.metrics import ndcg_per_query
    from components.evaluate.references import read_pairs, zero_shot_scores
    from components.evaluate.stats import paired_comparison
    from contract import layout
    from contract import schema as S

    start = time.monotonic()
    examples, _, _, log = prepare("homedepot", queries, 0, work)
    grades = human_grades(log, "homedepot")
    raw_schema = S.RawSchema.load(os.path.join(examples, layout.SCHEMA_FILE))
    cache = os.path.join(work, "text_cache")
    pairs = {}
    for split in ("train", "test"):
        frame = read_pairs(examples, raw_schema, split)
        frame["cosine"] = zero_shot_scores(frame, encoder_preset, cache)
        frame["grade"] = [
            grades[(q, str(p))] for q, p in zip(frame[S.QUERY], frame[S.PRODUCT_ID], strict=True)
        ]
        pairs[split] = frame
    train, test = pairs["train"], pairs["test"]
    features = ["cosine", *raw_schema.feature_names]
    query_ids = test[S.QUERY].to_numpy(object)

    def human_ndcg(scores) -> dict:
        return ndcg_per_query(query_ids, test["grade"].to_numpy(), np.asarray(scores, float), 5)

    zero_shot = human_ndcg(test["cosine"])
    rate = train[S.CLICKS] / train[S.IMPRESSIONS]
    position = train[S.POSITION].clip(lower=1.0)
    targets = {
        "clicks > 0": ((train[S.CLICKS] > 0).astype(float), "binary:logistic"),
        "clicks per impression": (rate, "binary:logistic"),
        "clicks per examined impression (position bias out)": (
            (rate * position**0.7).clip(upper=1.0),
            "binary:logistic",
        ),
        "human grade (not available in production)": (train["grade"], "reg:squarederror"),
    }
    rows = []
    seed_list = [int(s) for s in seeds.split(",")]
    for name, (target, objective) in targets.items():
        for with_cosine in (True, False):
            used = features if with_cosine else features[1:]
            per_seed = []
            for seed in seed_list:
                model = xgb.XGBRegressor(
                    objective=objective,
                    n_estimators=300,
                    max_depth=4,
                    learning_rate=0.05,
                    subsample=0.9,
                    colsample_bytree=0.9,
                    random_state=seed,
                )
                model.fit(train[used].to_numpy(float), np.asarray(target, float))
                per_seed.append(human_ndcg(model.predict(test[used].to_numpy(float))))
            averaged = {q: float(np.mean([s[q] for s in per_seed])) for q in per_seed[0]}
            test_vs = paired_comparison(averaged, zero_shot)
            rows.append(
                (
                    name,
                    "cosine + ranking features" if with_cosine else "ranking features only",
                    float(np.mean(list(averaged.values()))),
                    test_vs,
                )
            )
    lines = [
        "# Headroom above the zero-shot cosine for a frozen encoder (Home Depot, human NDCG@5)",
        "",
        "Command: `python benchmarks/frozen_headroom.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"{len(train)} train pairs, {len(test)} test pairs, {test[S.QUERY].nunique()} test "
        f"queries; encoder `{encoder_preset}`; XGBoost, 300 trees of depth 4, seeds "
        f"{seed_list} (per-query NDCG@5 averaged over seeds); {(time.monotonic() - start) / 60:.1f} min.",
        "",
        f"Zero-shot cosine alone: human NDCG@5 **{np.mean(list(zero_shot.values())):.4f}**.",
        "",
        "| trained on | features | human NDCG@5 | vs zero-shot | 95% CI | p |",
        "|---|---|---|---|---|---|",
    ]
    for name, used, value, res in rows:
        lines.append(
            f"| {name} | {used} | {value:.4f} | {res.mean_difference:+.4f} | "
            f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] | {res.p_value:.3f} |"
        )
    report = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(report)
    click.echo(report)


if __name__ == "__main__":
    main()
