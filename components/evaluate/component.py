"""Kubeflow component: evaluate the candidate model on the test split and bless it (or not)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    examples: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    blessing: Output[Artifact],
    model_base: str,
    model_name: str = "mlpr",
    auc_floor: float = 0.5,
    ndcg5_floor: float = 0.0,
    max_drop_vs_champion: float = 0.0,
) -> bool:
    """Scores the candidate and the production model on the test split and decides whether to push.

    For every task (click, add-to-cart, purchase) it computes AUC and NDCG@1/5/10 of the
    candidate's probabilities, grouped by query. The candidate is blessed only if, for every
    task, AUC >= auc_floor and NDCG@5 >= ndcg5_floor, and, when a model is already served from
    model_base/model_name (the champion, its highest numeric version), neither metric falls more
    than max_drop_vs_champion below the champion's value on the same split. On the first run
    only the floors apply.

    Args:
        examples: raw splits from ingest; the test split is used.
        model: the trained candidate; its SavedModel is in model/saved_model.
        metrics: every candidate metric, e.g. click_auc, purchase_ndcg_at_5.
        blessing: blessing.json (verdict, every check and the reasons) and eval_results.json
            (candidate and champion metrics).
        model_base: root of the TF Serving model repository (a mounted path).
        model_name: the model's directory under model_base.
        auc_floor: minimum AUC every task must reach.
        ndcg5_floor: minimum NDCG@5 every task must reach.
        max_drop_vs_champion: how far below the champion a metric may fall (0 = no worse).

    Returns:
        Whether the candidate may be pushed (a plain bool output, so that `dsl.If` on it
        works both on Kubeflow and in kfp.local).
    """
    import json
    import math
    import os

    from components import layout
    from components.evaluate.evaluate import (
        compute_metrics,
        find_champion,
        ndcg_name,
        score_split,
    )
    from components.evaluate.gate import decide

    test_pattern = layout.split_pattern(examples.path, "test")
    candidate_dir = os.path.join(model.path, layout.SAVED_MODEL_DIR)
    candidate = compute_metrics(score_split(candidate_dir, test_pattern))

    champion_dir = find_champion(model_base, model_name)
    champion = None
    if champion_dir is not None:
        champion = compute_metrics(score_split(champion_dir, test_pattern))

    verdict = decide(
        candidate,
        champion,
        floors={"auc": auc_floor, ndcg_name(5): ndcg5_floor},
        max_drop=max_drop_vs_champion,
        champion_uri=champion_dir,
        repository=os.path.join(model_base, model_name),
    )

    for key, value in candidate.items():
        name = key.replace("/", "_").replace("@", "_at_")
        if math.isnan(value):
            print(f"metric {key} is undefined (NaN) on this split; not logged")
            continue
        metrics.log_metric(name, value)

    def json_ready(values: dict | None) -> dict | None:
        if values is None:
            return None
        return {k: None if math.isnan(v) else v for k, v in values.items()}

    os.makedirs(blessing.path, exist_ok=True)
    with open(os.path.join(blessing.path, layout.BLESSING_FILE), "w", encoding="utf-8") as f:
        f.write(verdict.to_json())
    results = {
        "split": test_pattern,
        "candidate_uri": candidate_dir,
        "champion_uri": champion_dir,
        "candidate": json_ready(candidate),
        "champion": json_ready(champion),
    }
    with open(os.path.join(blessing.path, layout.EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, allow_nan=False)
    blessing.metadata["blessed"] = verdict.blessed
    blessing.metadata["reasons"] = list(verdict.reasons)
    blessing.metadata["champion_uri"] = champion_dir or ""

    for reason in verdict.reasons:
        print(reason)
    return verdict.blessed
