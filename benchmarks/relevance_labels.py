"""How well relevance labels from engagement agree with human grades, on Home Depot.

    .venv/bin/python benchmarks/relevance_labels.py --queries 3000 --work /tmp/rel

The log is prepared once (Home Depot adapter -> ingest, `paper_tables.prepare`): its clicks
are the adapter's simulation from the human grades (components/ingest/adapters/click_model.py:
a noisy lexical production ranking, examination 1/p^0.7), the grades stay beside them. For
every pair of all three splits, each candidate label is compared with the grade by Spearman's
rank correlation within each query, averaged over the queries where both vary (and by the
NDCG@5 of the grades when the query's products are ordered by the label):

- `click rate`: clicks / impressions, alone;
- `debiased click rate`: components/transform/relevance.debiased_ctr (eta 1, 10 pseudo-
  impressions towards the query's rate);
- `similarity`: the pretrained encoder's query-product cosine (zero-shot, --encoder-preset);
- `engagement relevance (w)`: components/transform/relevance.engagement_relevance, the
  percentile mix of the last two with weight w on the click rate.

The debiasing's eta is 1, the documented default, not the simulator's 0.7: a shop does not
know its examination curve either.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import click
import numpy as np
import pandas as pd

WEIGHTS = (0.25, 0.5, 0.75)


def labels_of(pairs: pd.DataFrame, similarity: np.ndarray) -> dict[str, np.ndarray]:
    from components.transform.relevance import debiased_ctr, engagement_relevance
    from contract import schema as S

    query = pairs[S.QUERY].to_numpy()
    counts = (pairs[S.CLICKS].to_numpy(), pairs[S.IMPRESSIONS].to_numpy())
    position = pairs[S.POSITION].to_numpy()
    out = {
        "click rate": counts[0] / np.maximum(counts[1], 1),
        "debiased click rate": debiased_ctr(query, *counts, position),
        "similarity": similarity,
    }
    for weight in WEIGHTS:
        out[f"engagement relevance (w={weight})"] = engagement_relevance(
            query, *counts, position, similarity, weight=weight
        )
    return out


@click.command()
@click.option("--queries", default=3000, show_default=True, help="Home Depot queries sampled.")
@click.option("--seed", default=0, show_default=True, help="Query sample and click simulation.")
@click.option("--encoder-preset", default="all-minilm-l6-v2", show_default=True)
@click.option("--work", default=None, help="Keep the prepared log and text cache here.")
@click.option(
    "--out",
    default=os.path.join(os.path.dirname(__file__), "results", "relevance_labels_homedepot.md"),
    show_default=True,
)
def main(queries: int, seed: int, encoder_preset: str, work: str | None, out: str) -> None:
    """Spearman per query of engagement relevance labels against Home Depot's grades."""
    from paper_tables import human_grades, prepare

    from components.evaluate import references as refs
    from components.evaluate.metrics import ndcg_at_k
    from components.transform.relevance import spearman_per_query
    from contract import layout
    from contract import schema as S

    start = time.monotonic()
    work = work or tempfile.mkdtemp(prefix="relevance-")
    examples, _, _, log = prepare("homedepot", queries, seed, work)
    schema = S.RawSchema.load(os.path.join(examples, layout.SCHEMA_FILE))
    pairs = pd.concat(
        [refs.read_pairs(examples, schema, split) for split in S.SPLITS], ignore_index=True
    )
    grades = human_grades(log, "homedepot")
    keys = zip(pairs[S.QUERY], pairs[S.PRODUCT_ID], strict=True)
    grade = np.array([grades[key] for key in keys])
    similarity = refs.zero_shot_scores(pairs, encoder_preset, os.path.join(work, "text_cache"))
    query = pairs[S.QUERY].to_numpy()
    rows = []
    for name, label in labels_of(pairs, similarity).items():
        rho, counted = spearman_per_query(query, label, grade)
        ndcg = ndcg_at_k(query, grade, label, 5).mean
        rows.append((name, rho, counted, ndcg))
    lines = [
        "# Relevance labels from engagement against Home Depot's human grades",
        "",
        f"Command: `python benchmarks/relevance_labels.py {' '.join(sys.argv[1:])}`",
        "",
        f"Data: {len(pairs)} pairs of {pairs[S.QUERY].nunique()} queries (all three splits), "
        f"clicks simulated from the grades by the Home Depot adapter (seed {seed}); encoder "
        f"{encoder_preset}, untrained. {os.cpu_count()} CPUs; "
        f"{(time.monotonic() - start) / 60:.1f} min.",
        "",
        "| label | Spearman with the grades, mean per query | queries | NDCG@5 of the grades "
        "ranked by the label |",
        "|---|---|---|---|",
        *(f"| {n} | {rho:.4f} | {c} | {ndcg:.4f} |" for n, rho, c, ndcg in rows),
        "",
        "Spearman is averaged over the queries with at least 3 pairs where the label and the "
        "grades both vary; NDCG@5 over the queries with a positive grade.",
        "",
    ]
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    click.echo(text)


if __name__ == "__main__":
    main()
