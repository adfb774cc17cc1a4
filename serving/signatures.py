"""Names of the serving SavedModel's signatures, inputs and outputs (one place, shared by
the export, the warmup requests, the server, the client and the benchmarks)."""

from contract import schema as S

SERVING_DEFAULT = "serving_default"  # one query, N candidates with their raw fields
RANK_PRECOMPUTED = "rank_precomputed"  # one query, N catalog product ids
ENCODE_PRODUCTS = "encode_products"  # product fields -> psi(i)
SCORE_EXAMPLES = "score_examples"  # serialized raw tf.Examples (evaluation)

PRODUCT_FIELDS = (S.TITLE, S.PRODUCT_TYPE, S.BRAND, S.COLOR, S.GENDER)
SCORE = "score"  # the ranking score: the tasks' probabilities, weighted


def output_keys(tasks) -> tuple[str, ...]:
    """A ranking signature's outputs: one probability per task (in funnel order), the score."""
    return (*tasks, SCORE)


PRODUCT_EMBEDDING = "product_embedding"
