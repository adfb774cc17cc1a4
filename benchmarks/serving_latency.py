"""Ranking latency end to end through the gRPC client against the running server.

    .venv/bin/python benchmarks/serving_latency.py

For each encoder ("minilm", the pipeline's default; "tiny"; and a DistilBERT-base-size
encoder: 6 layers, 768 wide, 12 heads, random weights) a ranker is trained for one epoch on the demo shop
with the pipeline's own code, exported and pushed into a model repository; `python -m
serving.server` is started on it as a user starts it, and the client (serving/client.py)
ranks 100 candidate products per request, from 1, 4 and 16 threads, with the raw signature
(every candidate's text encoded in the request) and with pre-computed product embeddings.

Prints p50/p95/p99 latency and throughput per cell, measured in this run; then, at
concurrency 1, the same request over gRPC (PredictionService.Predict) and over the server's
REST API (`--rest-port`, a kept-alive connection, columnar JSON), taking turns, against the
target of a REST p50 within 1.5x of gRPC's; and then the same requests timed in-process on the loaded SavedModel at concurrency 1 (no gRPC, no
serialization), which splits each end-to-end figure into model time and serving overhead.
The paper's Table 5 (V100) is printed beside. Client and server share this machine's CPUs.

Each model's compute is reported too: the matrix-product FLOPs of a request from the graph
(benchmarks/serving_profile.py), the time they take at this CPU's measured matmul rate, and
the TF Session's p50 (TF Serving's way of running a SavedModel). With `--reference-tree DIR`
(a checkout of an earlier commit) that tree trains and exports its own graph on the same
data, and this tree's server serves it to the same requests: the two are served side by side
and take turns in every measured cell (6 rounds), so the machine's drift reaches both alike;
the report gives the ratios.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The served rankers, shared with serving_profile.py and swap_time.py (train_and_push, here
# too for the reference tree's run of an earlier serving_latency.py).
import serving_common  # noqa: E402
from serving_common import ENCODERS, encoder_preset, serving_train_config, train_and_push  # noqa: E402

# What the default run's ranker changes from the pipeline's training settings, and why.
TRAIN_CHANGES = serving_common.TRAIN_CHANGES

CONCURRENCY = (1, 4, 16)
SIGNATURES = {"raw": "serving_default", "precomputed": "rank_precomputed"}
# A model and its reference take turns this many times in every measured cell.
ROUNDS = 6
# REST predict p50 at concurrency 1 against gRPC's, same request, kept-alive connections.
REST_TARGET_RATIO = 1.5
# The paper's Table 5: p99 latency of ranking a query's candidates on a V100.
PAPER_TABLE5_P99_MS = {"raw": 171.0, "precomputed": 112.0}
GOALS_P99_MS = {
    ("base", "precomputed"): 30.0,
    ("tiny", "precomputed"): 10.0,
    ("minilm", "precomputed"): 15.0,
}


def default_train_config():
    """The TrainConfig of the default run's first encoder (serving_common.TRAIN_CHANGES says
    what it changes)."""
    params = main.make_context("serving_latency", []).params
    encoder = params["encoders"].split(",")[0].strip()
    if encoder == "base":  # written by the run: its path only
        preset = os.path.join("<work>", "base_preset")
    else:
        preset = encoder_preset(encoder, None, "<work>", params["seed"])
    return serving_train_config(encoder, preset, params["seed"])


def train_and_push_reference(
    tree: str, encoder: str, paths: tuple, work: str, seed: int
) -> tuple[str, str]:
    """`train_and_push` of the checkout `tree` (an earlier commit: today's graph), run by that
    tree's own code in a subprocess on the same transformed data."""
    import json

    _, tft_dir, transformed = paths
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{tree!r}, {os.path.join(tree, 'benchmarks')!r}]\n"
        "from serving_latency import train_and_push\n"
        f"print(json.dumps(train_and_push({encoder!r}, None, (None, {tft_dir!r}, "
        f"{transformed!r}), {work!r}, {seed})))\n"
    )
    os.makedirs(work, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise click.ClickException(f"the reference tree failed to train:\n{done.stderr[-3000:]}")
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def candidate_lists(log, schema, n_requests: int, candidates: int, seed: int) -> list[tuple]:
    """(query, candidate product dicts) per request: the query's own products first, then
    other catalog products up to `candidates`. Only rows ingest keeps are used, so every id is
    in the pre-computed catalog."""
    from contract import schema as S
    from serving.signatures import PRODUCT_FIELDS

    kept = log[log[S.IMPRESSIONS] > S.MIN_IMPRESSIONS_EXCLUSIVE]
    columns = [S.PRODUCT_ID, *PRODUCT_FIELDS, *schema.feature_names]
    catalog = kept.drop_duplicates(S.PRODUCT_ID)[columns].to_dict("records")
    rng = np.random.default_rng(seed)
    queries = kept[S.QUERY].unique()
    requests = []
    for i in range(n_requests):
        query = queries[i % len(queries)]
        own = kept[kept[S.QUERY] == query][columns].to_dict("records")[:candidates]
        own_ids = {p[S.PRODUCT_ID] for p in own}
        others = [
            catalog[j]
            for j in rng.permutation(len(catalog))
            if catalog[j][S.PRODUCT_ID] not in own_ids
        ]
        requests.append((query, own + others[: candidates - len(own)]))
    return requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_base: str, port: int, log_path: str, *options: str) -> subprocess.Popen:
    """`python -m serving.server` as a user starts it (with any more `options`); returns once
    gRPC health says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.server",
            "--model-base",
            model_base,
            "--port",
            str(port),
            *options,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}; see {log_path}")
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return process
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"the server did not become SERVING within 300 s; see {log_path}")


class RestPredict:
    """POST `{"signature_name": ..., "inputs": {...}}` to the server's REST API on one
    kept-alive connection per thread; returns the outputs as arrays."""

    def __init__(self, port: int, model_name: str = "mlpr"):
        self.port = port
        self.path = f"/v1/models/{model_name}:predict"
        self._local = threading.local()

    def __call__(self, signature: str, inputs: dict) -> dict:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, 60)
        body = json.dumps({"signature_name": signature, "inputs": inputs})
        conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"REST predict failed with {answer.status}: {data[:300]!r}")
        return {k: np.asarray(v) for k, v in json.loads(data)["outputs"].items()}


def grpc_against_rest(
    client,
    rest: RestPredict,
    requests: list,
    features: list,
    precomputed: bool,
    max_requests: int,
    max_seconds: float,
) -> dict:
    """The same Predict over gRPC and REST at concurrency 1, in turn; checks they agree."""
    from serving.client import ranking_inputs

    signature = SIGNATURES["precomputed" if precomputed else "raw"]
    prepared = [ranking_inputs(q, p, features, precomputed) for q, p in requests]
    grpc_scores = client.predict(signature, prepared[0])[0]["score"]
    rest_scores = rest(signature, prepared[0])["score"]
    np.testing.assert_allclose(rest_scores, grpc_scores, rtol=1e-6)
    calls = {
        "gRPC": lambda inputs: client.predict(signature, inputs),
        "REST": lambda inputs: rest(signature, inputs),
    }
    for inputs in prepared[:3]:
        for call in calls.values():
            call(inputs)
    return run_in_turn(calls, prepared, 1, max_requests, max_seconds)


def summarize(latencies_s: list[float], wall_s: float) -> dict:
    ms = np.asarray(latencies_s) * 1000.0
    return {
        "requests": len(ms),
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "throughput": len(ms) / wall_s,
    }


def measure(
    call, requests: list, concurrency: int, max_requests: int, max_seconds: float
) -> tuple[list[float], float]:
    """`call(request)` from `concurrency` threads until `max_requests` are done or
    `max_seconds` have passed (at least 2 requests per thread): (each call's latency, wall)."""
    latencies: list[float] = []
    counter = iter(range(10**9))
    start = time.perf_counter()
    stop_at = start + max_seconds

    def worker() -> None:
        done = 0
        while True:
            i = next(counter)
            if i >= max_requests or (done >= 2 and time.perf_counter() > stop_at):
                return
            t0 = time.perf_counter()
            call(requests[i % len(requests)])
            latencies.append(time.perf_counter() - t0)
            done += 1

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, time.perf_counter() - start


def run_cell(call, requests: list, concurrency: int, max_requests: int, max_seconds: float) -> dict:
    return summarize(*measure(call, requests, concurrency, max_requests, max_seconds))


def run_in_turn(
    calls: dict, requests: list, concurrency: int, max_requests: int, max_seconds: float
) -> dict:
    """Like `run_cell` for each `{label: call}`, the labels taking turns over `ROUNDS` rounds
    (a share of the requests and seconds each), so that the machine's drift reaches all alike."""
    latencies = {label: [] for label in calls}
    walls = dict.fromkeys(calls, 0.0)
    for _ in range(ROUNDS if len(calls) > 1 else 1):
        for label, call in calls.items():
            share = ROUNDS if len(calls) > 1 else 1
            found, wall = measure(
                call,
                requests,
                concurrency,
                max(max_requests // share, 2 * concurrency),
                max_seconds / share,
            )
            latencies[label] += found
            walls[label] += wall
    return {label: summarize(latencies[label], walls[label]) for label in calls}


def in_process(
    saved_models: dict, requests: list, raw_schema, max_requests: int, max_seconds: float
) -> dict:
    """The same requests on each `{label: SavedModel}`'s signatures in this process,
    concurrency 1, the models taking turns; and, as "checks", the model's input checks alone
    (serving/export.checked_request) on the pre-computed requests, whose share of the model
    time is their cost. Returns {(label, mode): cell}."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)

    from contract import schema as S
    from serving.client import ranking_inputs
    from serving.export import checked_request

    models = {label: tf.saved_model.load(path) for label, path in saved_models.items()}
    results = {}
    for mode, signature in SIGNATURES.items():
        tensors = []
        for query, products in requests:
            inputs = ranking_inputs(
                query, products, list(raw_schema.feature_names), mode == "precomputed"
            )
            tensors.append(
                {
                    k: tf.constant(v, tf.string if isinstance(v[0], str) else tf.float32)
                    for k, v in inputs.items()
                }
            )
        calls = {}
        for label, model in models.items():
            fn = model.signatures[signature]
            for t in tensors[:3]:
                fn(**t)
            calls[label] = lambda t, fn=fn: fn(**t)
        for label, cell in run_in_turn(calls, tensors, 1, max_requests, max_seconds).items():
            results[label, mode] = cell
        if mode == "precomputed":
            candidates = [n for n in tensors[0] if n != S.QUERY]
            checks = tf.function(lambda t, c=candidates: checked_request(t, c, raw_schema))
            for t in tensors[:3]:
                checks(t)
            # This tree's checks: timed once, beside the first model (this tree's).
            results[next(iter(models)), "checks"] = run_cell(
                checks, tensors, 1, max_requests, max_seconds
            )
    return results


def reference_lines(rows, model_rows, compute, names, levels) -> list[str]:
    """The report's comparison with the reference tree's graph, measured in the same run."""
    labels = {r["encoder"] for r in rows}
    pairs = [(e, f"{e} (reference)") for e in names if f"{e} (reference)" in labels]
    if not pairs:
        return []

    def cell(table, label, mode, concurrency, key):
        return next(
            r[key]
            for r in table
            if (r["encoder"], r["mode"], r["concurrency"]) == (label, mode, concurrency)
        )

    top = max(levels)
    lines = [
        "## Against the reference tree's graph (same run, same server, same requests)",
        "",
        "Reference / this tree (above 1: this tree is faster).",
        "",
        "| encoder | products | model alone p50 | Session p50 | end-to-end p50 | end-to-end p99 | "
        f"throughput at concurrency {top} (this / reference) |",
        "|---|---|---|---|---|---|---|",
    ]
    for new, old in pairs:
        for mode in ("precomputed", "raw"):
            model = cell(model_rows, old, mode, 1, "p50") / cell(model_rows, new, mode, 1, "p50")
            session = compute[old, mode][1] / compute[new, mode][1]
            parts = [f"{model:.2f}x", f"{session:.2f}x"]
            if 1 in levels:
                parts += [
                    f"{cell(rows, old, mode, 1, k) / cell(rows, new, mode, 1, k):.2f}x"
                    for k in ("p50", "p99")
                ]
            else:
                parts += ["", ""]
            throughput = cell(rows, new, mode, top, "throughput") / cell(
                rows, old, mode, top, "throughput"
            )
            lines.append(f"| {new} | {mode} | " + " | ".join(parts) + f" | {throughput:.2f}x |")
    return [*lines, ""]


def table(rows: list[dict]) -> str:
    head = (
        "| encoder | products | concurrency | requests | p50 ms | p95 ms | p99 ms | req/s |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r['encoder']} | {r['mode']} | {r['concurrency']} | {r['requests']} | {r['p50']:.1f} | "
        f"{r['p95']:.1f} | {r['p99']:.1f} | {r['throughput']:.1f} |\n"
        for r in rows
    )


@click.command()
@click.option("--encoders", default="tiny,base", show_default=True, help=f"Of {sorted(ENCODERS)}.")
@click.option("--queries", default=200, show_default=True, help="Demo shop size.")
@click.option("--candidates", default=100, show_default=True, help="Products per request.")
@click.option("--concurrency", default="1,4,16", show_default=True)
@click.option("--max-requests", default=400, show_default=True, help="Per cell.")
@click.option(
    "--max-seconds", default=30.0, show_default=True, help="Per cell (after >=2 per thread)."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--reference-tree",
    default=None,
    help="A checkout of an earlier commit: its graph is trained, exported and measured too.",
)
@click.option("--out", default=None, help="Also write the Markdown report here.")
def main(
    encoders, queries, candidates, concurrency, max_requests, max_seconds, seed, reference_tree, out
) -> None:
    from paper_tables import prepare
    from reports import print_and_save, reference_tree_argument
    from serving_profile import interleaved_session_p50, matmul_rate, profile

    from contract import layout
    from contract import schema as S
    from serving.client import RankingClient, feature_names_of

    names = [e.strip() for e in encoders.split(",") if e.strip()]
    unknown = [e for e in names if e not in ENCODERS]
    if unknown:
        raise click.BadParameter(f"unknown encoder(s) {unknown}; choose from {sorted(ENCODERS)}")
    levels = [int(c) for c in concurrency.split(",")]
    work = tempfile.mkdtemp(prefix="mlpr-serving-bench-")
    click.echo(f"preparing the demo shop ({queries} queries) in {work}", err=True)
    examples, tft_dir, transformed, log = prepare("demo", queries, seed, work)
    schema = S.RawSchema.load(os.path.join(tft_dir, layout.SCHEMA_FILE))
    requests = candidate_lists(log, schema, 64, candidates, seed)

    rows, model_rows, rest_rows, flops, exports = [], [], [], {}, {}
    if reference_tree and "base" in names:
        raise click.BadParameter("--reference-tree measures tiny and minilm only")
    trees = [(e, e, None) for e in names]
    if reference_tree:
        trees = [t for e in names for t in ((e, e, None), (e, f"{e} (reference)", reference_tree))]
    exported = {}
    for encoder, label, tree in trees:
        click.echo(f"[{label}] training one epoch and exporting", err=True)
        t0 = time.perf_counter()
        paths = (examples, tft_dir, transformed)
        if tree is None:
            exported[label] = train_and_push(encoder, log, paths, work, seed)
        else:
            exported[label] = train_and_push_reference(
                tree, encoder, paths, os.path.join(work, "reference"), seed
            )
        click.echo(f"[{label}] trained and pushed in {time.perf_counter() - t0:.0f} s", err=True)
    for encoder in names:
        # The encoder's model and its reference, served side by side and measured in turn.
        labels = [label for e, label, _ in trees if e == encoder]
        servers, clients = {}, {}
        try:
            rest = None
            for label in labels:
                port = free_port()
                log_path = os.path.join(work, f"server_{label.replace(' ', '_')}.log")
                options = ()
                if label == encoder:  # this tree's server also answers REST
                    rest = RestPredict(free_port())
                    options = ("--rest-port", str(rest.port))
                servers[label] = start_server(exported[label][0], port, log_path, *options)
                clients[label] = RankingClient(f"127.0.0.1:{port}", timeout_s=60.0)
            for mode in ("precomputed", "raw"):
                precomputed = mode == "precomputed"
                calls = {}
                for label, client in clients.items():
                    features = feature_names_of(client, precomputed)
                    for query, products in requests[:3]:  # warm the channel and the graph
                        client.rank(query, products, features, precomputed)
                    calls[label] = lambda r, c=client, f=features, p=precomputed: c.rank(
                        r[0], r[1], f, p
                    )
                cells = grpc_against_rest(
                    clients[encoder],
                    rest,
                    requests,
                    feature_names_of(clients[encoder], precomputed),
                    precomputed,
                    max_requests,
                    max_seconds,
                )
                rest_rows.append({"encoder": encoder, "mode": mode, **cells})
                click.echo(
                    f"[{encoder}] {mode:<11} c=1   gRPC p50 {cells['gRPC']['p50']:.1f} ms  "
                    f"REST p50 {cells['REST']['p50']:.1f} ms",
                    err=True,
                )
                for level in levels:
                    cells = run_in_turn(calls, requests, level, max_requests, max_seconds)
                    for label, cell in cells.items():
                        rows.append({"encoder": label, "mode": mode, "concurrency": level, **cell})
                        click.echo(
                            f"[{label}] {mode:<11} c={level:<3} p50 {cell['p50']:.1f} ms  "
                            f"p99 {cell['p99']:.1f} ms  {cell['throughput']:.1f} req/s",
                            err=True,
                        )
        finally:
            for client in clients.values():
                client.close()
            for server in servers.values():
                server.terminate()
                server.wait(30)
        local = in_process(
            {label: exported[label][1] for label in labels},
            requests,
            schema,
            max_requests,
            max_seconds,
        )
        for (label, mode), cell in local.items():
            model_rows.append({"encoder": label, "mode": mode, "concurrency": 1, **cell})
        for label in labels:
            for mode, signature in SIGNATURES.items():
                version_dir = exported[label][1]
                flops[label, mode] = profile(version_dir, signature, candidates, runs=0)["flops"]
                exports[label, mode] = (version_dir, signature)
    click.echo("timing every model's Session in turn", err=True)
    session_p50 = interleaved_session_p50(exports, candidates, rounds=10, runs=20)
    compute = {key: (flops[key], session_p50[key]) for key in exports}
    rate = matmul_rate()

    lines = [
        f"# Serving latency: {candidates} candidates per request, {os.cpu_count()} CPUs, "
        "client and server on this machine",
        "",
        "    .venv/bin/python benchmarks/serving_latency.py "
        + " ".join(
            f"--{k} {v}"
            for k, v in (
                ("encoders", encoders),
                ("queries", queries),
                ("concurrency", concurrency),
                ("max-requests", max_requests),
            )
        )
        + (reference_tree_argument(reference_tree) if reference_tree else ""),
        "",
        "Encoders: " + "; ".join(f"{e}: {ENCODERS[e][0]}" for e in names),
        "",
        "## End to end: serving/client.py -> gRPC -> serving/server.py",
        "",
        table(rows),
        "## gRPC and REST: the same Predict request, concurrency 1, kept-alive connections",
        "",
        "Each request's inputs built once; the gRPC call builds its PredictRequest, the REST "
        "call its JSON body (columnar), and each decodes the answer; the two take turns. "
        f"Target: REST p50 within {REST_TARGET_RATIO}x of gRPC's.",
        "",
        "| encoder | products | gRPC p50 ms | gRPC p99 ms | REST p50 ms | REST p99 ms | "
        "REST / gRPC p50 | target |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['encoder']} | {r['mode']} | {r['gRPC']['p50']:.1f} | {r['gRPC']['p99']:.1f} | "
            f"{r['REST']['p50']:.1f} | {r['REST']['p99']:.1f} | "
            f"{r['REST']['p50'] / r['gRPC']['p50']:.2f}x | "
            f"{'met' if r['REST']['p50'] <= REST_TARGET_RATIO * r['gRPC']['p50'] else 'MISSED'} |"
            for r in rest_rows
        ),
        "",
        "## The model alone: the same requests on the SavedModel in-process, concurrency 1",
        "",
        table(model_rows),
        "Serving overhead at concurrency 1 (end-to-end p50 - model p50): "
        + ", ".join(
            f"{r['encoder']}/{r['mode']} {r['p50'] - m['p50']:+.1f} ms"
            for r in rows
            if r["concurrency"] == 1
            for m in model_rows
            if (m["encoder"], m["mode"]) == (r["encoder"], r["mode"])
        ),
        "",
        "Cost of the model's input checks (serving/export.checked_request, alone, on the "
        "pre-computed requests) against the whole pre-computed signature, p50: "
        + ", ".join(
            f"{e} {c['p50']:.2f} ms of {m['p50']:.2f} ms ({c['p50'] / m['p50']:.1%})"
            for e in names
            for c in model_rows
            for m in model_rows
            if (c["encoder"], c["mode"], m["encoder"], m["mode"]) == (e, "checks", e, "precomputed")
        ),
        "",
        f"## Compute per request ({candidates} candidates): FLOPs from the graph, against "
        "this CPU's matmul rate",
        "",
        "One traced TF Session run of the export's warmup request (TF Serving runs a "
        "SavedModel in a Session): the matrix products' FLOPs, the time they would take at "
        f"this CPU's float32 rate (a 1024^2 MatMul, {rate / 1e9:.0f} GFLOP/s in this run), "
        "and the Session's p50 over 200 runs (every model's Session timed in turn, 20 "
        "runs each, 10 rounds).",
        "",
        "| model | products | FLOPs per request | FLOP bound ms | Session p50 ms | "
        "Session / bound |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {mode} | {flops / 1e6:,.0f} M | {1000 * flops / rate:.2f} | "
            f"{p50:.2f} | {p50 / (1000 * flops / rate):.1f}x |"
            for (label, mode), (flops, p50) in compute.items()
        ),
        "",
        *reference_lines(rows, model_rows, compute, names, levels),
        "## The paper's Table 5 (V100 GPU, BERT-size encoders), beside the p99 above",
        "",
        "| products | paper p99 ms | " + " | ".join(f"{e} p99 ms (c=1)" for e in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for mode in ("raw", "precomputed"):
        ours = [
            next(
                r["p99"]
                for r in rows
                if (r["encoder"], r["mode"], r["concurrency"]) == (e, mode, 1)
            )
            if 1 in levels
            else float("nan")
            for e in names
        ]
        lines.append(
            f"| {mode} | {PAPER_TABLE5_P99_MS[mode]:.0f} | "
            + " | ".join(f"{v:.1f}" for v in ours)
            + " |"
        )
    lines += ["", "## Goals (pre-computed products, concurrency 1)", ""]
    for (encoder, mode), goal in GOALS_P99_MS.items():
        if encoder in names and 1 in levels:
            p99 = next(
                r["p99"]
                for r in rows
                if (r["encoder"], r["mode"], r["concurrency"]) == (encoder, mode, 1)
            )
            verdict = "met" if p99 <= goal else "MISSED"
            lines.append(f"- {encoder}: p99 {p99:.1f} ms, goal <= {goal:.0f} ms: {verdict}")
    report = "\n".join(lines) + "\n"

    print_and_save(report, out)


if __name__ == "__main__":
    main()
