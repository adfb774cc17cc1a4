"""The benchmark's model grid: Table 4 must walk from MLP_MTL to exactly MLPR."""

import importlib.util
import os
import sys

from model.architectures import ARCHITECTURES, architecture

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "paper_tables.py")
_spec = importlib.util.spec_from_file_location("paper_tables", _PATH)
paper_tables = importlib.util.module_from_spec(_spec)
sys.modules["paper_tables"] = paper_tables  # dataclasses look their module up here
_spec.loader.exec_module(paper_tables)


def test_table4_adds_stages_up_to_mlpr():
    variants = paper_tables.table4_variants()
    assert variants[0].label == "mlp_mtl (frozen)" and variants[-1].architecture == "mlpr"
    last_frozen = architecture("mlp_mtl").replace(**dict(variants[-2].changes))
    assert last_frozen == architecture("mlpr").replace(fine_tune_encoder=False)
    # Each step switches on exactly what its label says, on top of the previous step.
    configs = [architecture(v.architecture).replace(**dict(v.changes)) for v in variants[:-1]]
    assert not configs[0].uncertainty_loss and configs[1].uncertainty_loss
    assert configs[2].specific_experts and not configs[1].specific_experts
    assert configs[3].attention_units and not configs[2].attention_units
    assert configs[4].probability_transfer and not configs[3].probability_transfer


def test_table2_covers_every_architecture_and_xgboost():
    assert set(paper_tables.TABLE2) == {*ARCHITECTURES, "xgboost"}
    labels = [v.label for v in paper_tables.all_variants()]
    assert len(labels) == len(set(labels))


def test_no_configuration_is_trained_twice():
    configs = [
        (v.architecture, tuple(sorted(dict(v.changes).items())))
        for v in paper_tables.all_variants()
    ]
    assert len(configs) == len(set(configs))


def test_human_grades_map_each_home_depot_pair_to_its_grade():
    import pandas as pd

    from components import schema as S

    log = pd.DataFrame(
        {S.QUERY: ["drill", "drill", "saw"], S.PRODUCT_ID: [1, 2, 1], "relevance": [3, 1.67, 2.33]}
    )
    grades = paper_tables.human_grades(log, "homedepot")
    assert grades == {("drill", "1"): 3.0, ("drill", "2"): 1.67, ("saw", "1"): 2.33}
    assert paper_tables.human_grades(log, "demo") is None
    assert paper_tables.human_grades(log.drop(columns="relevance"), "homedepot") is None
