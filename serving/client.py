"""gRPC client for the ranking model, on TF Serving's stubs (tensorflow-serving-api): works
against TF Serving (k8s/) and the local server (serving/server.py) alike.

    python -m serving.client --target 127.0.0.1:8500 --query "red boots" \
        --products products.jsonl [--precomputed]

`products.jsonl`: one JSON object per candidate with `product_id`, the product fields
(`title`, `product_type`, `brand`, `color`, `gender`; not needed with --precomputed) and the
ranking features (a missing optional feature may be null). It prints the candidates best
first with their click, add-to-cart and purchase probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Mapping, Sequence

import click
import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from contract import schema as S
from serving.requests import decode_outputs, predict_request
from serving.signatures import PRODUCT_FIELDS, RANK_PRECOMPUTED, SCORE, SERVING_DEFAULT

RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


class ServingError(Exception):
    """The model server refused or failed a call (after any retries)."""

    def __init__(self, target: str, method: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{method} to {target} failed with {code.name}: {details}")
        self.code = code
        self.details = details


@dataclasses.dataclass(frozen=True)
class RankedProduct:
    """A ranked candidate: its score and each task's probability (e.g. {"click": 0.31, "atc":
    0.08, "purchase": 0.03}), tasks in funnel order."""

    product_id: str
    score: float
    probabilities: dict[str, float]


class RankingClient:
    """Ranks a query's candidate products through TF Serving's PredictionService.

    Args:
        target: `host:port` of the gRPC endpoint.
        model_name: the served model.
        timeout_s: deadline of each attempt.
        max_attempts: attempts per call; only UNAVAILABLE (server starting, restarting or
            unreachable) is retried, with exponential backoff and jitter.
        backoff_s: first backoff; doubled after each failed attempt.

    Examples:
        >>> client = RankingClient("127.0.0.1:8500")  # doctest: +SKIP
        >>> client.rank("red boots", products)[0].product_id  # doctest: +SKIP
        'p17'
    """

    def __init__(
        self,
        target: str,
        model_name: str = "mlpr",
        timeout_s: float = 5.0,
        max_attempts: int = 4,
        backoff_s: float = 0.1,
    ):
        if timeout_s <= 0 or max_attempts < 1 or backoff_s < 0:
            raise ValueError(
                "timeout_s must be > 0, max_attempts >= 1 and backoff_s >= 0; got "
                f"{timeout_s}, {max_attempts}, {backoff_s}"
            )
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._channel = grpc.insecure_channel(target)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RankingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict(
        self, signature: str, inputs: Mapping[str, Sequence], version: int | None = None
    ) -> tuple[dict[str, np.ndarray], int]:
        """Raw Predict: the outputs and the version that answered."""
        request = predict_request(self.model_name, signature, inputs, version)
        response = self._call("Predict", self._predict.Predict, request)
        return decode_outputs(response), int(response.model_spec.version.value)

    def rank(
        self,
        query: str,
        products: Sequence[Mapping],
        feature_names: Sequence[str],
        precomputed: bool = False,
        market: str | None = None,
    ) -> list[RankedProduct]:
        """The candidates best first. `products`: dicts with `product_id`, the product fields
        (unless `precomputed`) and `feature_names` (None or NaN: a missing optional value);
        `market`: the shopper's market, for a model trained on a log with markets."""
        if not products:
            raise ValueError("rank needs at least one candidate product")
        inputs = ranking_inputs(query, products, feature_names, precomputed, market)
        outputs, _ = self.predict(RANK_PRECOMPUTED if precomputed else SERVING_DEFAULT, inputs)
        scores = outputs.pop(SCORE)
        # The response's outputs are a map: its tasks in funnel order, each stage at most as
        # likely as the one before (the highest mean probability first).
        tasks = sorted(outputs, key=lambda t: -float(np.mean(outputs[t])))
        ranked = [
            RankedProduct(
                product_id=str(p[S.PRODUCT_ID]),
                score=float(scores[i]),
                probabilities={t: float(outputs[t][i]) for t in tasks},
            )
            for i, p in enumerate(products)
        ]
        return sorted(ranked, key=lambda r: -r.score)

    def status(self) -> dict[int, str]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        response = self._call("GetModelStatus", self._models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State
        return {s.version: state.Name(s.state) for s in response.model_version_status}

    def signatures(self) -> dict[str, list[str]]:
        """Signature name -> its input names, from GetModelMetadata."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = self.model_name
        request.metadata_field.append("signature_def")
        response = self._call("GetModelMetadata", self._predict.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {name: sorted(d.inputs) for name, d in signature_map.signature_def.items()}

    def _call(self, method: str, stub_method, request):
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                return stub_method(request, timeout=self.timeout_s)
            except grpc.RpcError as err:
                code = err.code()
                if code not in RETRYABLE or attempt == self.max_attempts:
                    detail = err.details() or ""
                    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                        detail = f"no answer within {self.timeout_s} s. {detail}".strip()
                    if code in RETRYABLE:
                        detail = f"{detail} (after {attempt} attempts)"
                    raise ServingError(self.target, method, code, detail) from err
                time.sleep(delay * (1.0 + random.random()))  # jitter: no thundering herd
                delay *= 2
        raise AssertionError("unreachable")


def ranking_inputs(
    query: str,
    products: Sequence[Mapping],
    feature_names: Sequence[str],
    precomputed: bool,
    market: str | None = None,
) -> dict[str, list]:
    """Request inputs for one query and its candidates. The query is sent once per
    candidate: TF Serving's batching concatenates requests along the first dimension, so
    every input must have one entry per candidate; the model encodes each distinct query
    once all the same."""
    fields = (S.PRODUCT_ID,) if precomputed else (S.PRODUCT_ID, *PRODUCT_FIELDS)
    inputs: dict[str, list] = {S.QUERY: [query] * len(products)}
    if market is not None:
        inputs[S.MARKET] = [market] * len(products)
    for i, product in enumerate(products):
        absent = [f for f in (*fields, *feature_names) if f not in product]
        if absent:
            raise ValueError(f"candidate {i} ({product.get(S.PRODUCT_ID)!r}) lacks {absent}")
    for field in fields:
        inputs[field] = [str(p[field]) for p in products]
    for name in feature_names:
        inputs[name] = [float("nan") if p[name] is None else float(p[name]) for p in products]
    return inputs


def feature_names_of(client: RankingClient, precomputed: bool) -> list[str]:
    """The ranking features the served model takes (its float inputs)."""
    inputs = client.signatures()[RANK_PRECOMPUTED if precomputed else SERVING_DEFAULT]
    text = {S.QUERY, S.MARKET, S.PRODUCT_ID, *PRODUCT_FIELDS}
    return [name for name in inputs if name not in text]


@click.command()
@click.option("--target", default="127.0.0.1:8500", show_default=True, help="host:port")
@click.option("--model-name", default="mlpr", show_default=True)
@click.option("--query", required=True, help="The search query.")
@click.option(
    "--products",
    "products_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSON lines, one candidate product per line.",
)
@click.option(
    "--market", default=None, help="The shopper's market (models trained on a log with markets)."
)
@click.option("--precomputed", is_flag=True, help="Use the pre-computed product embeddings.")
@click.option("--top", default=0, type=int, help="Print only the best N (0: all).")
@click.option("--timeout", default=5.0, show_default=True, type=float, help="Seconds per try.")
def main(target, model_name, query, products_file, market, precomputed, top, timeout) -> None:
    """Rank the candidate products of QUERY with the served model and print them."""
    with open(products_file, encoding="utf-8") as fh:
        products = [json.loads(line) for line in fh if line.strip()]
    try:
        with RankingClient(target, model_name, timeout_s=timeout) as client:
            names = feature_names_of(client, precomputed)
            ranked = client.rank(query, products, names, precomputed, market)
    except (ServingError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    tasks = list(ranked[0].probabilities)
    widths = [max(8, len(t)) for t in tasks]
    click.echo(
        f"{'rank':>4}  {'product_id':<20} {'score':>7} "
        + " ".join(f"{t:>{w}}" for t, w in zip(tasks, widths, strict=True))
    )
    for i, r in enumerate(ranked[: top or None], start=1):
        click.echo(
            f"{i:>4}  {r.product_id:<20} {r.score:7.4f} "
            + " ".join(f"{r.probabilities[t]:>{w}.4f}" for t, w in zip(tasks, widths, strict=True))
        )


if __name__ == "__main__":
    main()
