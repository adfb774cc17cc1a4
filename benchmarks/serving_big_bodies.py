"""Big REST bodies against gRPC latency: while clients send 64 MB bodies to the REST API (refused
with 413 as they arrive), how much do gRPC requests to the same server slow down, and how much
memory does the server take?

    ./dev demo                      # pushes a model under runs/serving, lists example products
    .venv/bin/python benchmarks/serving_big_bodies.py --model-base runs/serving \\
        --products runs/pipeline_root/<run>/example_products.jsonl --query 'new daypack'

`python -m serving.server` is started on the pushed model as a user starts it. gRPC ranks the
products (`serving_default`, one client, one request at a time) in rounds that take turns:
quiet, then with `--senders` threads each sending 64 MB bodies in a loop over new connections.
Prints gRPC p50/p99 of each condition, their ratio (target: p99 under 2x), how long each
refusal took (target: <= 0.5 s) and the server's peak resident memory above its quiet level
(target: <= 100 MB), all measured in this run; writes them to --out.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time

import click
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from reports import print_and_save  # noqa: E402
from serving_latency import free_port, start_server  # noqa: E402

BODY_BYTES = 64 * 1024 * 1024
TARGETS = {"p99_ratio": 2.0, "refusal_s": 0.5, "rss_growth_mb": 100.0}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def send_big_body(port: int) -> tuple[float, int]:
    """One 64 MB POST on a new connection: (seconds until the answer, HTTP status)."""
    chunk = b"[" + b"1," * (1024 * 1024 // 2 - 1) + b"1]"
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES
        )
        sent = 0
        try:
            while sent < BODY_BYTES:
                sock.sendall(chunk[: min(len(chunk), BODY_BYTES - sent)])
                sent += len(chunk)
                sock.settimeout(0.0)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break  # the server answered before the whole body: refused
                except BlockingIOError:
                    pass
                finally:
                    sock.settimeout(30)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0
    return time.perf_counter() - start, status


def percentiles(values: list[float]) -> dict:
    arr = np.asarray(values) * 1000
    return {"n": len(arr), "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99))}  # fmt: skip


@click.command()
@click.option("--model-base", required=True, help="A model repository with a pushed model.")
@click.option("--products", required=True, help="JSON lines of candidate products.")
@click.option("--query", required=True)
@click.option("--rounds", default=4, show_default=True)
@click.option("--requests-per-round", default=100, show_default=True)
@click.option("--senders", default=2, show_default=True, help="Threads sending 64 MB bodies.")
@click.option(
    "--out", default=os.path.join(HERE, "results", "serving_big_bodies.md"), show_default=True
)
def main(model_base, products, query, rounds, requests_per_round, senders, out) -> None:
    from components.ingest import demo_data
    from serving.client import RankingClient, ranking_inputs

    with open(products, encoding="utf-8") as fh:
        candidates = [json.loads(line) for line in fh if line.strip()]
    features = demo_data.demo_schema().feature_names
    inputs = ranking_inputs(query, candidates, features, precomputed=False)
    grpc_port, rest_port = free_port(), free_port()
    log_path = os.path.join(tempfile.mkdtemp(prefix="big-bodies-"), "server.log")
    server = start_server(model_base, grpc_port, log_path, "--rest-port", str(rest_port))
    client = RankingClient(f"127.0.0.1:{grpc_port}", timeout_s=30)
    try:
        for _ in range(10):
            client.predict("serving_default", inputs)
        quiet_rss = rss_mb(server.pid)
        latency = {"quiet": [], "big bodies": []}
        refusals, statuses, peak_rss = [], [], quiet_rss
        for _ in range(rounds):
            for condition in ("quiet", "big bodies"):
                stop = threading.Event()

                def sender(stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        seconds, status = send_big_body(rest_port)
                        refusals.append(seconds)
                        statuses.append(status)

                threads = [threading.Thread(target=sender) for _ in range(senders)]
                if condition == "big bodies":
                    for thread in threads:
                        thread.start()
                    time.sleep(0.5)
                for _ in range(requests_per_round):
                    start = time.perf_counter()
                    client.predict("serving_default", inputs)
                    latency[condition].append(time.perf_counter() - start)
                    peak_rss = max(peak_rss, rss_mb(server.pid))
                stop.set()
                for thread in threads:
                    if thread.is_alive():
                        thread.join()
    finally:
        server.terminate()
        server.wait()
    quiet, loaded = percentiles(latency["quiet"]), percentiles(latency["big bodies"])
    ratio = loaded["p99_ms"] / quiet["p99_ms"]
    growth = peak_rss - quiet_rss
    worst = max(refusals) if refusals else float("nan")
    lines = [
        "# gRPC latency while REST refuses 64 MB bodies",
        "",
        f"Command: `python benchmarks/serving_big_bodies.py {' '.join(sys.argv[1:])}`",
        "",
        f"{os.cpu_count()} CPUs shared by client, senders and server; {rounds} rounds of "
        f"{requests_per_round} gRPC `serving_default` requests ({len(candidates)} candidates) per "
        f"condition, taking turns; {senders} threads sending 64 MB bodies in the loaded rounds.",
        "",
        "| condition | gRPC requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| quiet | {quiet['n']} | {quiet['p50_ms']:.1f} | {quiet['p99_ms']:.1f} |",
        f"| 64 MB bodies arriving | {loaded['n']} | {loaded['p50_ms']:.1f} | "
        f"{loaded['p99_ms']:.1f} |",
        "",
        f"- gRPC p99 ratio loaded/quiet: {ratio:.2f} (target < {TARGETS['p99_ratio']:g})",
        f"- 64 MB bodies sent: {len(refusals)}; answers: "
        f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }; slowest refusal "
        f"{worst:.3f} s, median {np.median(refusals):.3f} s (target <= {TARGETS['refusal_s']:g} s)",
        f"- server resident memory: {quiet_rss:.0f} MB quiet, peak {peak_rss:.0f} MB, growth "
        f"{growth:.0f} MB (target <= {TARGETS['rss_growth_mb']:g} MB)",
    ]
    print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    main()
