"""Where a ranking request's time goes inside the model, as TF Serving runs it.

    .venv/bin/python benchmarks/serving_profile.py --out benchmarks/results/serving_profile.md

TF Serving loads a SavedModel into a TensorFlow Session and runs the signature's tensors; this
does the same (`tf.compat.v1.saved_model.loader.load`), on the export's own warmup requests of
100 candidates (`assets.extra`), and reports, measured in this run:

- the Session's time per request (p50 over `--runs`), and the signature called as a TF2
  function in process (what `benchmarks/serving_latency.py` times as "model alone");
- one traced run (`RunOptions.FULL_TRACE`): the kernels executed, their summed time by op type
  and by the ranker's part (name scope), so the cost of FLOPs (MatMul) and of many small ops
  shows apart;
- the FLOPs per request from the graph (`tf.compat.v1.profiler`, float operations of the run's
  shapes) and what they would take at this CPU's measured matmul rate (a 1024 x 1024 float32
  MatMul timed in the same run): the compute floor of the request.

Without `--saved-model`, the pipeline's default ranker (MLPR) with `--encoder` ("tiny" or
"minilm", the pipeline's default) is trained for one epoch on the demo shop and exported, as
`serving_latency.py` does (serving_common.train_and_push: the pipeline's training settings
but those of serving_common.TRAIN_CHANGES).
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import serving_common  # noqa: E402

# What the default run's ranker changes from the pipeline's training settings, and why.
TRAIN_CHANGES = serving_common.TRAIN_CHANGES


def default_train_config():
    """The TrainConfig of the default run's ranker (TRAIN_CHANGES says what it changes)."""
    params = main.make_context("serving_profile", []).params
    preset = serving_common.encoder_preset(params["encoder"], None, "<work>", 0)
    return serving_common.serving_train_config(params["encoder"], preset, 0)


def warmup_feed(version_dir: str, signature: str, size: int):
    """{input name: ndarray} of the export's warmup request of `size` candidates."""
    import tensorflow as tf

    from serving.warmup import read_warmup_requests

    for request in read_warmup_requests(version_dir):
        if request.model_spec.signature_name != signature:
            continue
        arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        if max(a.size for a in arrays.values()) == size:
            return arrays
    raise click.ClickException(f"no warmup request of {size} for {signature} in {version_dir}")


def scope_of(node_name: str) -> str:
    """The ranker's part a kernel belongs to: the first name scope that says it."""
    parts = [p for p in node_name.split("/") if p]
    for part in parts:
        lowered = part.lower()
        for key in (
            "multi_gate_experts",
            "specific_experts",
            "shared_bottom",
            "tower",
            "attention",
            "interactions",
            "embedding",
            "product_table",
            "lookup",
            "head",
            "probability_transfer",
            "text_encoder",
            "query_encoder",
            "tokenizer",
            "check",
        ):
            if key in lowered:
                return key
    return parts[0] if parts else node_name


_MATMULS = {"MatMul", "_MklMatMul", "_FusedMatMul", "_MklNativeFusedMatMul", "_MklFusedMatMul"}
_BATCH_MATMULS = {"BatchMatMulV2", "_MklBatchMatMulV2", "BatchMatMul", "_MklBatchMatMul"}
_EINSUMS = {"Einsum", "_MklEinsum"}


def matmul_flops(run_metadata) -> tuple[int, collections.Counter]:
    """Floating-point operations of the matrix products the traced run executed (2 per
    multiply-add), from the executed graphs (the Session's partition graphs and those of the
    functions it ran) and the shapes the trace recorded; elementwise ops are left out (a few percent
    of a dense network's FLOPs). Also by part of the ranker."""
    shapes = {}
    for device in run_metadata.step_stats.dev_stats:
        for node in device.node_stats:
            shapes[node.node_name] = [
                [d.size for d in out.tensor_description.shape.dim] for out in node.output
            ]

    def shape_of(tensor: str):
        name, _, index = tensor.lstrip("^").partition(":")
        found = shapes.get(name)
        return found[int(index or 0)] if found and len(found) > int(index or 0) else None

    total, by_scope = 0, collections.Counter()
    graphs = list(run_metadata.partition_graphs)
    for function in run_metadata.function_graphs:  # functions the runtime did not inline
        graphs += list(function.partition_graphs)
    for node in (node for graph in graphs for node in graph.node):
        if node.op not in _MATMULS | _BATCH_MATMULS | _EINSUMS:
            continue
        a, b = (shape_of(t) for t in node.input[:2])
        if not a or not b:
            continue
        if node.op in _EINSUMS:
            left, right = node.attr["equation"].s.decode().split("->")[0].split(",")
            sizes = dict(zip(left, a, strict=False)) | dict(zip(right, b, strict=False))
            flops = 2 * int(np.prod(list(sizes.values())))
        else:
            k = a[-2] if node.attr["transpose_a"].b or node.attr["adj_x"].b else a[-1]
            n = b[-2] if node.attr["transpose_b"].b or node.attr["adj_y"].b else b[-1]
            m = a[-1] if node.attr["transpose_a"].b or node.attr["adj_x"].b else a[-2]
            batch = int(np.prod(a[:-2])) if len(a) > 2 else 1
            flops = 2 * batch * m * k * n
        total += flops
        by_scope[scope_of(node.name)] += flops
    return total, by_scope


def matmul_rate(m: int = 1024, k: int = 1024, n: int = 1024) -> float:
    """float32 FLOP/s of an [m, k] x [k, n] MatMul on this CPU (best of 20)."""
    import tensorflow as tf

    a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
    matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    matmul(a, b).numpy()
    best = min(_timed(lambda: matmul(a, b).numpy()) for _ in range(20))
    return 2 * m * k * n / best


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def interleaved_session_p50(models: dict, size: int, rounds: int, runs: int) -> dict:
    """Session p50 (ms) of each `{key: (version_dir, signature)}` on its warmup request of
    `size` candidates, the models timed in turn, `runs` requests each per round, so that the
    machine's drift over the measurement reaches every model alike."""
    sessions = {
        key: session_request(version_dir, signature, size)
        for key, (version_dir, signature) in models.items()
    }
    times = {key: [] for key in models}
    for _ in range(rounds):
        for key, (session, fetch, feed) in sessions.items():
            run = functools.partial(session.run, fetch, feed)
            times[key] += [_timed(run) for _ in range(runs)]
    for session, _, _ in sessions.values():
        session.close()
    return {key: 1000 * float(np.median(t)) for key, t in times.items()}


def session_request(version_dir: str, signature: str, size: int) -> tuple:
    """The SavedModel loaded into a TF Session as TF Serving loads it, and its warmup request
    of `size` candidates to `signature`, run 5 times: (session, fetch, feed)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops of the serving graph)

    feed_arrays = warmup_feed(version_dir, signature, size)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
    sig = meta.signature_def[signature]
    feed = {graph.get_tensor_by_name(sig.inputs[k].name): v for k, v in feed_arrays.items()}
    fetch = {k: graph.get_tensor_by_name(v.name) for k, v in sig.outputs.items()}
    for _ in range(5):
        session.run(fetch, feed)
    return session, fetch, feed


def profile(version_dir: str, signature: str, size: int, runs: int) -> dict:
    import tensorflow as tf

    session, fetch, feed = session_request(version_dir, signature, size)
    with session:
        times = [_timed(lambda: session.run(fetch, feed)) for _ in range(runs)]
        options = tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE, output_partition_graphs=True
        )
        run_metadata = tf.compat.v1.RunMetadata()
        session.run(fetch, feed, options=options, run_metadata=run_metadata)
        by_type, by_scope, kernels = collections.Counter(), collections.Counter(), 0
        for device in run_metadata.step_stats.dev_stats:
            for node in device.node_stats:
                name = node.node_name.split(":")[0]
                if name in ("_SOURCE", "_SINK") or not node.timeline_label:
                    continue
                micros = node.op_end_rel_micros - node.op_start_rel_micros
                op_type = node.timeline_label.split("(")[0].split("=")[-1].strip()
                by_type[op_type] += micros
                by_scope[scope_of(name)] += micros
                kernels += 1
        flops, flops_by_scope = matmul_flops(run_metadata)
    if not runs:
        return {"flops": flops, "flops_by_scope": flops_by_scope}
    model = tf.saved_model.load(version_dir)
    fn = model.signatures[signature]
    tensors = {k: tf.constant(v) for k, v in warmup_feed(version_dir, signature, size).items()}
    for _ in range(5):
        fn(**tensors)
    function_times = [_timed(lambda: fn(**tensors)) for _ in range(runs)]
    return {
        "session_p50_ms": 1000 * float(np.median(times)),
        "function_p50_ms": 1000 * float(np.median(function_times)),
        "kernels": kernels,
        "kernel_ms": sum(by_type.values()) / 1000,
        "by_type": by_type,
        "by_scope": by_scope,
        "flops": flops,
        "flops_by_scope": flops_by_scope,
    }


@click.command()
@click.option("--saved-model", default=None, help="A SavedModel version directory to profile.")
@click.option("--encoder", default="tiny", show_default=True, type=click.Choice(["tiny", "minilm"]))
@click.option("--signature", default="rank_precomputed", show_default=True)
@click.option("--candidates", default=100, show_default=True)
@click.option("--runs", default=200, show_default=True)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(saved_model, encoder, signature, candidates, runs, out) -> None:
    from reports import print_and_save

    what = saved_model
    if saved_model is None:
        from paper_tables import prepare
        from serving_common import train_and_push

        work = tempfile.mkdtemp(prefix="mlpr-serving-profile-")
        click.echo(f"training MLPR ({encoder}) on the demo shop in {work}", err=True)
        paths = prepare("demo", 200, 0, work)
        _, saved_model = train_and_push(encoder, paths[3], paths[:3], work, 0)
        what = f"MLPR, {encoder} encoder, one epoch on the demo shop (200 queries)"
    found = profile(saved_model, signature, candidates, runs)
    rate = matmul_rate()
    serving_rate = matmul_rate(candidates, 512, 2048)
    floor_ms = 1000 * found["flops"] / rate
    lines = [
        f"# Inside a ranking request: {signature}, {candidates} candidates, {os.cpu_count()} CPUs",
        "",
        "    .venv/bin/python benchmarks/serving_profile.py"
        + (f" --saved-model {saved_model}" if what == saved_model else f" --encoder {encoder}"),
        "",
        f"Model: {what}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Session.run p50 (TF Serving's path) | {found['session_p50_ms']:.2f} ms |",
        f"| signature as a TF2 function, p50 | {found['function_p50_ms']:.2f} ms |",
        f"| kernels executed | {found['kernels']:,} |",
        f"| their summed time (one traced run) | {found['kernel_ms']:.2f} ms |",
        f"| matrix-product FLOPs per request (executed graph) | {found['flops'] / 1e6:,.1f} M |",
        f"| this CPU's float32 MatMul rate (1024^2, same run) | {rate / 1e9:,.1f} GFLOP/s |",
        f"| FLOP bound: FLOPs / that rate | {floor_ms:.2f} ms |",
        f"| the rate at a serving shape ({candidates} x 512 x 2048, same run) | "
        f"{serving_rate / 1e9:,.1f} GFLOP/s |",
        f"| FLOPs / that rate | {1000 * found['flops'] / serving_rate:.2f} ms |",
        f"| Session p50 / FLOP bound | {found['session_p50_ms'] / floor_ms:,.1f}x |",
        "",
        "Kernel time by op type (top 15; one traced run, summed over both cores' threads):",
        "",
        "| op type | ms | share |",
        "|---|---|---|",
    ]
    total = max(sum(found["by_type"].values()), 1)
    for op, micros in found["by_type"].most_common(15):
        lines.append(f"| {op} | {micros / 1000:.2f} | {micros / total:.0%} |")
    lines += [
        "",
        "Kernel time and matrix-product FLOPs by part of the ranker (name scope):",
        "",
        "| part | ms | share of time | MFLOPs | share of FLOPs |",
        "|---|---|---|---|---|",
    ]
    all_flops = max(found["flops"], 1)
    for scope, micros in found["by_scope"].most_common(15):
        flops = found["flops_by_scope"].get(scope, 0)
        lines.append(
            f"| {scope} | {micros / 1000:.2f} | {micros / total:.0%} | {flops / 1e6:,.1f} | "
            f"{flops / all_flops:.0%} |"
        )
    print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    main()
