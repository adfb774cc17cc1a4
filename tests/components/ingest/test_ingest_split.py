"""The query split is stable, normalised and close to 80/10/10."""

from __future__ import annotations

import collections
import hashlib
import random
import string

from components.ingest.split import _normalize_any, bucket_of, normalize_query, split_of
from contract import schema as S


def test_known_queries_map_to_fixed_splits():
    # Pinned: a change here moves queries between splits and invalidates every evaluation.
    assert split_of("red running shoes") == "train"
    assert split_of("leather sofa") == "eval"
    assert split_of("trainers") == "test"
    assert bucket_of("trainers") == 91


def test_bucket_is_sha256_of_the_normalised_query():
    digest = hashlib.sha256(b"leather sofa").digest()
    assert bucket_of("Leather Sofa") == int.from_bytes(digest[:8], "big") % 100


def test_normalisation():
    assert normalize_query("  Red\tRunning   SHOES \n") == "red running shoes"
    assert (
        normalize_query("ｒｅｄ　ｓｈｏｅｓ") == "red shoes"
    )  # full-width letters and space (NFKC)
    assert split_of("  Leather   SOFA") == split_of("leather sofa")
    # Zero-width and other format characters go, control characters count as spaces, case is
    # folded (not only lowered) and composed after folding.
    assert normalize_query("blue jeans\u200d") == "blue jeans"
    assert normalize_query("\ufeffsoft\u00adshell\u200bjacket") == "softshelljacket"
    assert normalize_query("rain\x00boots\x1f") == "rain boots"
    assert normalize_query("STRASSE") == normalize_query("Straße") == "strasse"
    assert normalize_query("Cafe\u0301") == normalize_query("CAFÉ") == "caf\u00e9"
    assert split_of("blue jeans\u200d") == split_of("Blue Jeans")


def test_the_quick_path_for_printable_ascii_normalises_as_the_full_one():
    rng = random.Random(0)
    alphabet = string.printable  # letters, digits, punctuation and every ASCII whitespace
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(5000)]
    texts += ["Mixed CASE  Query", " a\tb ", "x\x0by", "", "   "]
    for text in texts:
        assert normalize_query(text) == _normalize_any(text), repr(text)


def test_the_model_reads_the_query_with_the_core_op_part_of_the_normalisation():
    import tensorflow as tf

    from components.transform.preprocessing import query_text

    queries = ["  Blue  JEANS\u200d ", "soft\u00adshell\tjacket", "\ufeffCAFÉ lamp\n", "ÅNGSTRÖM"]
    got = [v.decode("utf-8") for v in query_text(tf.constant(queries)).numpy()]
    assert got == [normalize_query(q) for q in queries]


def test_shares_are_close_to_the_declared_percentages():
    queries = [f"query {i}" for i in range(20_000)]
    shares = collections.Counter(split_of(q) for q in queries)
    for split in S.SPLITS:
        assert abs(shares[split] / len(queries) - S.SPLIT_PERCENT[split] / 100) < 0.01
