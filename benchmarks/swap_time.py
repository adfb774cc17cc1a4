"""How soon a pushed version serves: the time from the push's rename into the model
repository to the first Predict answered by the new version, through the real server.

    .venv/bin/python benchmarks/swap_time.py --out benchmarks/results/swap_time.md

A ranker is trained for one epoch on the demo shop with the pipeline's own code (the
pipeline's default encoder, MiniLM frozen, unless `--encoder tiny`) and pushed as version 1;
`python -m serving.server` is started on the repository as a user starts it (its defaults:
`latest:1`, a look at the repository every second, as TF Serving); then the same export is pushed again `--pushes` times with the push
step's own `push_model` (copied to a hidden staging folder, renamed into place). After each
rename a client sends an unversioned pre-computed ranking request every 50 ms and records
when the answer first comes from the new version, and GetModelStatus's states on the way.
Requests keep being answered by the old version meanwhile: any failed request is counted.
The ranker trains with the pipeline's settings but those of serving_common.TRAIN_CHANGES
(serving_common.train_and_push).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import serving_common  # noqa: E402

# What the default run's ranker (MiniLM) changes from the pipeline's training settings, and
# why (`--encoder tiny` changes its encoder too: serving_common.TRAIN_CHANGES).
TRAIN_CHANGES = {"max_epochs": serving_common.TRAIN_CHANGES["max_epochs"]}


def default_train_config():
    """The TrainConfig of the default run's ranker (TRAIN_CHANGES says what it changes)."""
    params = main.make_context("swap_time", []).params
    preset = serving_common.encoder_preset(params["encoder"], None, "<work>", params["seed"])
    return serving_common.serving_train_config(params["encoder"], preset, params["seed"])


@click.command()
@click.option("--encoder", type=click.Choice(["minilm", "tiny"]), default="minilm")
@click.option("--pushes", default=5, show_default=True)
@click.option("--queries", default=200, show_default=True, help="Demo shop size.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(encoder: str, pushes: int, queries: int, seed: int, out: str | None) -> None:
    from paper_tables import prepare
    from serving_common import train_and_push
    from serving_latency import candidate_lists, free_port, start_server

    from components.push.publish import push_model
    from contract import layout
    from contract import schema as S
    from serving.client import RankingClient, ServingError, feature_names_of, ranking_inputs
    from serving.signatures import RANK_PRECOMPUTED
    from serving.versions import POLL_SECONDS

    work = tempfile.mkdtemp(prefix="mlpr-swap-bench-")
    examples, tft_dir, transformed, log = prepare("demo", queries, seed, work)
    schema = S.RawSchema.load(os.path.join(tft_dir, layout.SCHEMA_FILE))
    query, products = candidate_lists(log, schema, 1, 100, seed)[0]
    model_base, first = train_and_push(encoder, log, (examples, tft_dir, transformed), work, seed)
    saved_model = os.path.join(work, f"model_{encoder}", layout.SAVED_MODEL_DIR)
    port = free_port()
    server = start_server(model_base, port, os.path.join(work, "server.log"))
    rows, failed = [], 0
    try:
        with RankingClient(f"127.0.0.1:{port}", timeout_s=30.0) as client:
            features = feature_names_of(client, precomputed=True)
            inputs = ranking_inputs(query, products, features, precomputed=True)
            _, version = client.predict(RANK_PRECOMPUTED, inputs)
            for _ in range(pushes):
                pushed = push_model(saved_model, model_base, "mlpr", {"blessed": True})
                renamed = time.monotonic()
                states, answered = [], version
                while answered != pushed.version and time.monotonic() - renamed < 120:
                    time.sleep(0.05)
                    states.append(client.status().get(pushed.version, "-"))
                    try:
                        _, answered = client.predict(RANK_PRECOMPUTED, inputs)
                    except ServingError:
                        failed += 1
                seconds = time.monotonic() - renamed
                if answered != pushed.version:
                    raise RuntimeError(f"version {pushed.version} did not serve within 120 s")
                seen = list(dict.fromkeys(states))
                rows.append((pushed.version, seconds, seen))
                click.echo(
                    f"version {pushed.version}: {seconds:.2f} s ({' -> '.join(seen)})", err=True
                )
                version = answered
    finally:
        server.terminate()
        server.wait(timeout=30)
    times = np.array([r[1] for r in rows])
    lines = [
        f"# From a push's rename to the first answer by the new version ({encoder})",
        "",
        f"    .venv/bin/python benchmarks/swap_time.py --encoder {encoder} --pushes {pushes}",
        "",
        "Server: `python -m serving.server` with its defaults (`--versions latest:1`, "
        f"`--poll-seconds {POLL_SECONDS:g}`); "
        f"first version {first}. One unversioned pre-computed request (100 candidates) every "
        "50 ms after each push.",
        "",
        "| version | seconds | GetModelStatus states seen |",
        "|---|---|---|",
        *[f"| {v} | {s:.2f} | {' -> '.join(seen)} |" for v, s, seen in rows],
        "",
        f"Median {np.median(times):.2f} s, max {times.max():.2f} s over {len(times)} pushes; "
        f"{failed} failed requests.",
    ]
    report = "\n".join(lines) + "\n"
    from reports import print_and_save

    print_and_save(report, out)


if __name__ == "__main__":
    main()
