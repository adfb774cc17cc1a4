"""The serving SavedModel: its signatures agree with each other and with pre-computing, bad
requests fail with clear InvalidArgument errors, its warmup requests replay, and every op of
its graph is one the stock TF Serving binary has."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from serving_testlib import catalog_rows, loaded_model, named_inputs, trained_model

from conftest import make_raw_example
from contract import layout
from contract import schema as S
from serving.export import EXPORT_INFO_FILE
from serving.signatures import (
    ENCODE_PRODUCTS,
    PRODUCT_EMBEDDING,
    PRODUCT_FIELDS,
    RANK_PRECOMPUTED,
    SCORE_EXAMPLES,
    SERVING_DEFAULT,
    output_keys,
)
from serving.warmup import read_warmup_requests

FEATURES = list(S.DEMO_SCHEMA.feature_names)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    _, saved_model = trained_model(tmp_path_factory)
    return saved_model, loaded_model(saved_model)


def _inputs(signature):
    return sorted(signature.structured_input_signature[1])


def test_signatures_and_their_inputs(model):
    path, loaded = model
    sigs = loaded.signatures
    assert set(sigs) == {SERVING_DEFAULT, RANK_PRECOMPUTED, ENCODE_PRODUCTS, SCORE_EXAMPLES}
    assert _inputs(sigs[SERVING_DEFAULT]) == sorted(
        [S.QUERY, S.PRODUCT_ID, *PRODUCT_FIELDS, *FEATURES]
    )
    assert _inputs(sigs[RANK_PRECOMPUTED]) == sorted([S.QUERY, S.PRODUCT_ID, *FEATURES])
    assert _inputs(sigs[ENCODE_PRODUCTS]) == sorted(PRODUCT_FIELDS)
    assert _inputs(sigs[SCORE_EXAMPLES]) == ["examples"]
    for name in (SERVING_DEFAULT, RANK_PRECOMPUTED, SCORE_EXAMPLES):
        assert sorted(sigs[name].structured_outputs) == sorted(output_keys(S.DEFAULT_TASKS))
    with open(os.path.join(path, EXPORT_INFO_FILE)) as fh:
        info = json.load(fh)
    assert info["catalog_products"] == 128 + 32 + 32  # every product of the three splits


def test_one_query_raw_precomputed_and_examples_agree(model):
    _, loaded = model
    rows = catalog_rows(20, query="red boots")
    raw = loaded.signatures[SERVING_DEFAULT]
    per_pair = raw(**named_inputs(raw, rows))
    # The query once (scalar or [1]) for every candidate gives the same scores.
    for query in (tf.constant("red boots"), tf.constant(["red boots"])):
        once = raw(**{**named_inputs(raw, rows), S.QUERY: query})
        for key in output_keys(S.DEFAULT_TASKS):
            np.testing.assert_allclose(once[key].numpy(), per_pair[key].numpy(), rtol=1e-6)
    examples = loaded.signatures[SCORE_EXAMPLES](
        examples=tf.constant([make_raw_example(r, S.DEMO_SCHEMA) for r in rows])
    )
    pre = loaded.signatures[RANK_PRECOMPUTED]
    precomputed = pre(**named_inputs(pre, rows))
    for key in output_keys(S.DEFAULT_TASKS):
        assert per_pair[key].shape == (20,)
        np.testing.assert_allclose(examples[key].numpy(), per_pair[key].numpy(), rtol=1e-5)
        np.testing.assert_allclose(precomputed[key].numpy(), per_pair[key].numpy(), rtol=1e-5)
    click, atc, purchase = (per_pair[t].numpy() for t in S.DEFAULT_TASKS)
    assert np.all((click > 0) & (click < 1)) and np.all(click >= atc) and np.all(atc >= purchase)
    np.testing.assert_allclose(per_pair["score"].numpy(), click + atc + purchase, rtol=1e-5)


def test_score_examples_takes_what_serving_default_takes(model):
    """An example holding only serving_default's inputs (no logged position, no description,
    no labels) is scored, as serving_default scores the same candidates."""
    _, loaded = model
    rows = catalog_rows(6, query="red boots")
    raw = loaded.signatures[SERVING_DEFAULT]
    names = raw.structured_input_signature[1]
    assert S.POSITION not in names and S.DESCRIPTION not in names

    def example(row) -> bytes:
        features = {}
        for name, spec in names.items():
            if spec.dtype == tf.string:
                value = tf.train.BytesList(value=[str(row[name]).encode()])
                features[name] = tf.train.Feature(bytes_list=value)
            else:
                value = tf.train.FloatList(value=[float(row[name])])
                features[name] = tf.train.Feature(float_list=value)
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    scored = loaded.signatures[SCORE_EXAMPLES](examples=tf.constant([example(r) for r in rows]))
    expected = raw(**named_inputs(raw, rows))
    for key in output_keys(S.DEFAULT_TASKS):
        np.testing.assert_allclose(scored[key].numpy(), expected[key].numpy(), rtol=1e-5)


def test_queries_of_a_batch_are_scored_as_their_own(model):
    """Two queries in one request (TF Serving's batching joins requests): each candidate is
    scored with its own query, as if sent alone."""
    _, loaded = model
    raw = loaded.signatures[SERVING_DEFAULT]
    first, second = catalog_rows(6, query="red boots"), catalog_rows(6, query="oak desk")[3:]
    joined = raw(**named_inputs(raw, first[:3] + second))
    alone = [raw(**named_inputs(raw, first[:3])), raw(**named_inputs(raw, second))]
    np.testing.assert_allclose(
        joined["score"].numpy(),
        np.concatenate([a["score"].numpy() for a in alone]),
        rtol=1e-5,
    )
    assert not np.allclose(
        joined["score"].numpy()[:3],
        raw(**named_inputs(raw, catalog_rows(3, query="oak desk")))["score"].numpy(),
    )


def test_encode_products_gives_one_embedding_per_product(model):
    _, loaded = model
    encode = loaded.signatures[ENCODE_PRODUCTS]
    rows = catalog_rows(5)
    out = encode(**named_inputs(encode, rows))[PRODUCT_EMBEDDING].numpy()
    assert out.shape == (5, 16) and np.all(np.isfinite(out))
    again = encode(**named_inputs(encode, rows[2:3]))[PRODUCT_EMBEDDING].numpy()
    np.testing.assert_allclose(again[0], out[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "signature, change, message",
    [
        (
            RANK_PRECOMPUTED,
            {S.PRODUCT_ID: ["p0-1", "nope", "p0-2"]},
            r"unknown product_id\(s\).*nope",
        ),
        (SERVING_DEFAULT, {S.TITLE: ["a", "b"]}, "mismatched lengths: input .*title.* has"),
        (SERVING_DEFAULT, {S.QUERY: ["a", "b"]}, "input .*query.* must have 1 entry"),
        (
            SERVING_DEFAULT,
            {S.QUERY: [[["a"]]]},
            "input .{0,2}query.{0,2} must be a scalar or a vector",
        ),
        (
            SERVING_DEFAULT,
            {"price": [1.0, float("nan"), 2.0]},
            r"input .{0,2}price.{0,2} must be finite and at least 0; candidate\] \[1\] \[has\] \[nan\]",
        ),
        (
            RANK_PRECOMPUTED,
            {"rating": [1.0, 2.0, 7.5]},
            r"input .{0,2}rating.{0,2} must be finite and from 0 to 5; candidate\] \[2\] \[has\] \[7.5\]",
        ),
        (
            RANK_PRECOMPUTED,
            {"review_count": [-1.0, 2.0, 3.0]},
            r"input .{0,2}review_count.{0,2} must be .*candidate\] \[0\] \[has\] \[-1\]",
        ),
        (
            SERVING_DEFAULT,
            {"lexical_score": [0.5, float("inf"), 3.4e38]},
            r"input .{0,2}lexical_score.{0,2} must be finite and from 0 to 1; candidate\] \[1\] \[has\] \[inf\]",
        ),
    ],
)
def test_bad_requests_fail_with_invalid_argument(model, signature, change, message):
    _, loaded = model
    fn = loaded.signatures[signature]
    inputs = {**named_inputs(fn, catalog_rows(3)), **{k: tf.constant(v) for k, v in change.items()}}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(**inputs)


def test_score_examples_checks_the_ranking_features(model):
    _, loaded = model
    fn = loaded.signatures[SCORE_EXAMPLES]
    rows = catalog_rows(2)
    good = [make_raw_example(r, S.DEMO_SCHEMA) for r in rows]
    assert np.all(np.isfinite(fn(examples=tf.constant(good))["score"].numpy()))
    bad = make_raw_example({**rows[1], "price": float("-inf")}, S.DEMO_SCHEMA)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"input .{0,2}price.{0,2} must be finite"
    ):
        fn(examples=tf.constant([good[0], bad]))


def test_empty_candidate_list_fails_with_invalid_argument(model):
    _, loaded = model
    fn = loaded.signatures[SERVING_DEFAULT]
    inputs = {k: v[:0] for k, v in named_inputs(fn, catalog_rows(1)).items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty candidate list"):
        fn(**{**inputs, S.QUERY: tf.constant("red boots")})


def test_warmup_requests_replay_on_the_model(model):
    path, loaded = model
    requests = read_warmup_requests(path)
    assert {r.model_spec.signature_name for r in requests} == {
        SERVING_DEFAULT,
        RANK_PRECOMPUTED,
        ENCODE_PRODUCTS,
    }
    for request in requests:
        fn = loaded.signatures[request.model_spec.signature_name]
        out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        assert all(np.all(np.isfinite(v.numpy())) for v in out.values())


# The ops the stock TF Serving binary (tensorflow/serving:2.21.0) can run: it links the
# TensorFlow core kernels of the same TensorFlow release and the TF Text ops. A process that
# imports only `tensorflow` has exactly the core ops registered; importing `tensorflow_text`
# adds the TF Text ops. Python-only ops (py_function) are registered but have no kernel
# outside Python, so they are refused explicitly.
_REGISTERED = """
import json, sys
from tensorflow.python.framework import op_def_registry
ops = json.load(sys.stdin)
core = {op for op in ops if op_def_registry.get(op) is not None}
import tensorflow_text  # noqa: F401
text = {op for op in ops if op not in core and op_def_registry.get(op) is not None}
print(json.dumps({"core": sorted(core), "text": sorted(text)}))
"""
PYTHON_ONLY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def graph_ops(saved_model_dir: str) -> set[str]:
    """Every op type in the SavedModel: its meta graphs' nodes and the nodes of every function
    in their libraries (calls of library functions are not ops and are left out)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as fh:
        proto.ParseFromString(fh.read())
    ops, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        ops |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            ops |= {node.op for node in function.node_def}
    return ops - functions


def test_every_op_is_in_the_stock_tf_serving_binary(model):
    path, _ = model
    ops = graph_ops(path)
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow\n" + _REGISTERED],
        input=json.dumps(sorted(ops)),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    unknown = ops - set(found["core"]) - set(found["text"])
    assert not unknown, f"ops outside TensorFlow core and TF Text: {sorted(unknown)}"
    assert not ops & PYTHON_ONLY_OPS
    # The tokenizer runs on TF Text ops; the rest is core (tables, parsing, math).
    assert "FastWordpieceTokenizeWithOffsets" in found["text"]
    assert {"LookupTableFindV2", "ParseExampleV2", "MatMul", "Unique"} <= set(found["core"])


@pytest.mark.parametrize("signature", [SERVING_DEFAULT, RANK_PRECOMPUTED])
def test_a_session_inlines_the_signature(model, signature):
    """TF Serving runs the SavedModel in a TF Session, whose graph optimizer inlines the
    signature's function, unless a stateful op's result goes unused (a table read nobody
    needs): the function then runs as one opaque call, unoptimised. The ranker's matrix
    products must be in the graph the Session executed."""
    path, _ = model
    request = next(
        r
        for r in read_warmup_requests(path)
        if r.model_spec.signature_name == signature
        and r.inputs[S.PRODUCT_ID].tensor_shape.dim
        and r.inputs[S.PRODUCT_ID].tensor_shape.dim[0].size > 1
    )
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        sig = meta.signature_def[signature]
        feed = {
            graph.get_tensor_by_name(sig.inputs[k].name): tf.make_ndarray(v)
            for k, v in request.inputs.items()
        }
        fetch = {k: graph.get_tensor_by_name(v.name) for k, v in sig.outputs.items()}
        metadata = tf.compat.v1.RunMetadata()
        session.run(
            fetch,
            feed,
            options=tf.compat.v1.RunOptions(output_partition_graphs=True),
            run_metadata=metadata,
        )
    executed = {node.op for g in metadata.partition_graphs for node in g.node}
    assert executed & {"MatMul", "_MklMatMul", "_MklNativeFusedMatMul", "_FusedMatMul"}, executed


def test_padding_is_trimmed_to_the_longest_text_of_the_batch():
    from serving.export import _trim_padding

    tokens = {
        "ids": tf.constant([[2, 7, 3, 0, 0, 0], [2, 3, 0, 0, 0, 0]]),
        "mask": tf.constant([[True, True, True, False, False, False], [True, True] + [False] * 4]),
    }
    trimmed = _trim_padding(tokens, "ids", "mask")
    np.testing.assert_array_equal(trimmed["ids"], [[2, 7, 3], [2, 3, 0]])
    np.testing.assert_array_equal(trimmed["mask"], [[1, 1, 1], [1, 1, 0]])
    assert trimmed["ids"].dtype == trimmed["mask"].dtype == tf.int32
    # An all-padding batch keeps one position, so the encoder still has an input.
    empty = _trim_padding(
        {"ids": tf.zeros([2, 4], tf.int32), "mask": tf.zeros([2, 4])}, "ids", "mask"
    )
    assert empty["ids"].shape == (2, 1)


def test_a_catalog_without_first_layer_terms_ranks_the_same(model, tmp_path_factory, tmp_path):
    """`product_terms=False` (a catalog too large for the terms): rank_precomputed computes
    the product terms from psi(i) and the categorical ids, with the same scores."""
    import keras
    import keras_hub
    import tensorflow_transform as tft
    from serving_testlib import CONFIG

    from model.text_preprocessor import TextPreprocessor
    from serving.export import export_serving_model

    root, _ = trained_model(tmp_path_factory)
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(root / "model" / "encoder_preset"))
    preprocessor = TextPreprocessor(tokenizer, CONFIG.query_length, CONFIG.product_length)
    ranker = keras.saving.load_model(str(root / "model" / layout.KERAS_MODEL_FILE))
    files = [
        f
        for split in S.SPLITS
        for f in sorted(tf.io.gfile.glob(layout.split_pattern(str(root / "tx"), split)))
    ]
    plain = export_serving_model(
        ranker,
        preprocessor,
        tft.TFTransformOutput(str(root / "tft")),
        S.DEMO_SCHEMA,
        str(tmp_path / "plain"),
        catalog_files=files,
        product_terms=False,
    )
    with open(os.path.join(plain, EXPORT_INFO_FILE)) as fh:
        assert json.load(fh)["catalog_columns"] == ["category_ids", PRODUCT_EMBEDDING]
    rows = catalog_rows(30, query="red boots")
    _, loaded = model
    pre = loaded.signatures[RANK_PRECOMPUTED]
    expected = pre(**named_inputs(pre, rows))
    other = tf.saved_model.load(plain).signatures[RANK_PRECOMPUTED]
    got = other(**named_inputs(other, rows))
    for key in output_keys(S.DEFAULT_TASKS):
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=0, atol=1e-5)
