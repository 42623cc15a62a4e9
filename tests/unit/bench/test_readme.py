"""README tables come from benchmark JSON: block replacement, target checks and the Pareto front."""

import json

import pytest

from shelfcast.bench.compression import generalisation_summary, pareto_front
from shelfcast.bench.readme import compression_targets, update_readme

pytestmark = pytest.mark.unit


def _variant(config, name, mape, tflite, quantization="float32", parent=None):
    return {"config": config, "name": name, "mape_mean": mape, "mape_std": 0.1, "tflite_bytes": tflite,
            "quantization": quantization, "float_parent": parent, "params": 1, "nonzero_params": 1,
            "article_bytes": 4, "gzip_bytes": 1, "smape_mean": mape, "wape_mean": mape,
            "gap_to_floor_pct_points": mape - 12.7, "latency_us_median": 10.0}


@pytest.fixture
def doc():
    return {
        "data": "test", "series": 2, "seeds": 3,
        "variants": [
            _variant("article", "LSTM-64", 15.5, 71000),
            _variant("article", "LSTM-16", 17.0, 7700),
            _variant("article", "LSTM-16+INT8", 17.5, 5500, "int8", "LSTM-16"),
            _variant("edge", "LSTM-16", 13.1, 7900),
            _variant("edge", "LSTM-16+INT8", 13.15, 5700, "int8", "LSTM-16"),
            {**_variant("article", "Pruned-70%", 16.7, 71000), "mape_per_seed": [16.5, 16.9, 16.7]},
        ],
        "baselines": [
            {"name": "mean of same weekday, last 2 weeks", "mape_pct": 16.74, "smape_pct": 16.0, "wape_pct": 13.8,
             "params": 0, "gap_to_floor_pct_points": 4.0},
            {"name": "multiplicative profile (series x weekday x month x trend)", "mape_pct": 14.2, "smape_pct": 13.0,
             "wape_pct": 11.2, "params": 22, "gap_to_floor_pct_points": 1.5},
            {"name": "LightGBM global", "kind": "peer", "key": "lightgbm", "mape_pct": 12.9, "smape_pct": 12.5,
             "wape_pct": 10.8, "params": 4000, "model_bytes": 450_000, "fit_seconds": 50.0,
             "gap_to_floor_pct_points": 0.2},
        ],
        "noise_floor": {"mape_pct_true_mean": 12.7},
        "configs": [{"name": "article", "wall_seconds": 1500.0, "train": {"epochs": 80}},
                    {"name": "edge", "wall_seconds": 900.0, "train": {"epochs": 80}}],
        "machine": {"cpus": 2},
        "baselines_wall_seconds": 60.0,
        "wall_seconds": 2400.0,
    }


def test_targets_are_judged_from_the_numbers(doc):
    table = compression_targets(doc)
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert lines["article config LSTM-64: MAPE <= article's 15.92 and < two-week rule 16.74"].endswith("| yes |")
    assert lines["article config LSTM-16: MAPE <= article's 16.74 and < two-week rule 16.74"].endswith("| no |")
    assert "+0.50 points | no" in lines["article config INT8 LSTM-16: within 0.3 MAPE points of its float parent"]
    assert "+0.05 points | yes" in lines["edge config INT8 LSTM-16: within 0.3 MAPE points of its float parent"]
    # The edge model (13.15) is behind the LightGBM peer (12.9): not met, whatever its size.
    assert lines["edge config INT8 LSTM-16 (<= 6,000 B): MAPE <= 12.80 and below every peer (best: LightGBM global "
                 "12.90)"].endswith("13.15 ± 0.10 at 5,700 B | no |")
    assert lines["article config Pruned-70%: every seed <= article's 16.84"].endswith("16.50, 16.90, 16.70 | no |")
    assert lines["article table (3 seeds, every variant) in under 30 minutes on 2 cores"].endswith("25.0 min | yes |")
    assert lines["edge configuration (3 seeds) with rules, peers and floor in under 20 minutes on 2 cores"].endswith(
        "16.0 min | yes |")


def test_generalisation_targets_compare_with_both_peers_and_the_floor():
    from shelfcast.bench.readme import generalisation_targets

    run = {"subset": "6-10:11-20", "int8_mape_mean": 11.27, "int8_mape_std": 0.01, "tflite_bytes": 5768,
           "noise_floor_mape": 11.11, "glm_profile_mape": 11.29, "lightgbm_mape": 11.36}
    worse = {**run, "subset": "all:all", "int8_mape_mean": 11.30}
    far = {**run, "subset": "1-2:1-2", "int8_mape_mean": 11.62, "glm_profile_mape": 11.7, "lightgbm_mape": 11.8}
    big = {**run, "subset": "3-4:1-2", "tflite_bytes": 6001}
    rows = generalisation_targets({"runs": [run, worse, far, big]}).splitlines()[2:]
    assert [r.split(" | ")[-2:] for r in rows] == [["yes", "yes |"], ["no", "no |"], ["yes", "no |"], ["no", "no |"]]


def test_update_readme_rewrites_only_the_marked_blocks(tmp_path, doc):
    results = tmp_path / "results"
    results.mkdir()
    (results / "compression.json").write_text(json.dumps(doc))
    (results / "store_sync.json").write_text(json.dumps({"stores": 200, "p50_ms": 3.5}))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table:store_sync -->\nold\n<!-- /table:store_sync -->\n"
                      "<!-- table:compression-targets -->\n<!-- /table:compression-targets -->\nend\n")
    assert update_readme(readme, results) == ["store_sync", "compression-targets"]
    text = readme.read_text()
    assert "old" not in text and "| stores | 200 |" in text and "| p50_ms | 3.500 |" in text
    assert text.startswith("intro\n") and text.endswith("end\n")
    (results / "store_sync.json").unlink()
    with pytest.raises(FileNotFoundError, match="run its benchmark"):
        update_readme(readme, results)


def test_pareto_front_keeps_only_undominated_points():
    points = [(100, 15.0), (50, 16.0), (200, 14.0), (150, 15.5), (50, 17.0)]
    assert pareto_front(points) == [1, 0, 2]


def test_generalisation_summary(doc):
    row = generalisation_summary(doc, "1-5:1-10", "edge")
    assert row["int8_mape_mean"] == 13.15 and row["float_mape_mean"] == 13.1
    assert row["gap_to_floor_pct_points"] == pytest.approx(0.45)
    assert row["two_week_rule_mape"] == 16.74 and row["profile_mape"] == 14.2
    assert (row["lightgbm_mape"], row["lightgbm_bytes"], row["lightgbm_fit_seconds"]) == (12.9, 450_000, 50.0)


def test_a_generalisation_run_keeps_the_subsets_of_the_same_configuration_it_did_not_rerun():
    from shelfcast.bench.compression import merge_generalisation

    previous = {"config": "edge", "runs": [{"subset": "a", "v": 1}, {"subset": "b", "v": 1}],
                "details": {"a": {"v": 1}, "b": {"v": 1}}}
    merged = merge_generalisation(previous, "edge", [{"subset": "b", "v": 2}, {"subset": "c", "v": 2}],
                                  {"b": {"v": 2}, "c": {"v": 2}})
    assert merged == {"config": "edge",
                      "runs": [{"subset": "a", "v": 1}, {"subset": "b", "v": 2}, {"subset": "c", "v": 2}],
                      "details": {"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 2}}}
    other = merge_generalisation(previous, "article", [{"subset": "c", "v": 3}], {"c": {"v": 3}})
    assert other == {"config": "article", "runs": [{"subset": "c", "v": 3}], "details": {"c": {"v": 3}}}
    assert merge_generalisation(None, "edge", [], {}) == {"config": "edge", "runs": [], "details": {}}


def test_fault_and_ingest_scale_tables_render_every_case_and_pair_the_arms():
    from shelfcast.bench.readme import render

    faults = render("faults", [
        {"name": "a | b", "expected": "x", "observed": "y", "passed": True},
        {"name": "c", "expected": "x", "observed": "z", "passed": False},
    ])
    assert "| a \\| b | x | y | yes |" in faults and "| c | x | z | **no** |" in faults
    assert "1 of 2 cases passed." in faults
    scale = render("ingest_scale", {
        "one_more_file": [{"impl": "sales table", "files_before": 10, "seconds": 0.1},
                          {"impl": "reference", "files_before": 10, "seconds": 0.2}],
        "targets": [{"target": "t", "measured": "m", "met": False}],
    })
    assert "| files_before | seconds (sales table) | seconds (reference) |" in scale
    assert "| 10 | 0.100 | 0.200 |" in scale and "| t | m | no |" in scale


def test_mutation_table_scores_each_module_against_the_target_and_counts_the_gaps():
    from shelfcast.bench.readme import render

    def module(name, mutants, killed, timeout, survived, no_tests, equivalent, score):
        return {"module": name, "file": f"src/{name}.py", "mutants": mutants, "killed": killed, "timeout": timeout,
                "survived": survived, "no_tests": no_tests, "equivalent": equivalent, "score_pct": score}

    doc = {"target_pct": 85.0, "tool": "mutmut 3.8.1", "machine": {"cpus": 2}, "wall_seconds": 330.0,
           "command": "python bench/mutation.py", "tests": "tests/unit/a.py",
           **module("all", 1210, 1100, 2, 90, 18, 10, 92.0), "modules": [
               module("manifest", 210, 200, 0, 10, 0, 10, 100.0),
               module("client", 1000, 900, 2, 80, 18, 0, 84.9)],
           "survivors": [{"equivalent": True}] * 10 + [{"equivalent": False}] * 98}
    table = render("mutation", doc).splitlines()
    assert table[0] == ("| module | file | mutants | killed | timeout | survived | no tests | equivalent | score "
                        "| target met |")
    assert table[2] == "| manifest | `src/manifest.py` | 210 | 200 | 0 | 10 | 0 | 10 | 100.0 % | yes |"
    assert table[3] == "| client | `src/client.py` | 1,000 | 900 | 2 | 80 | 18 | 0 | 84.9 % | **no** |"
    assert table[4] == "| **all** |  | 1,210 | 1,100 | 2 | 90 | 18 | 10 | 92.0 % | yes |"
    assert table[6] == ("Target 85 % per module and overall; mutmut 3.8.1 on 2 cores, 5.5 min: "
                        "`python bench/mutation.py` (tests: `tests/unit/a.py`). 98 surviving mutants are not "
                        "equivalent (gaps the tests leave open), 10 are equivalent; each is listed with its line "
                        "and reason in the JSON.")
    assert len(table) == 7
    doc["not_checked"] = 1200
    assert render("mutation", doc).splitlines()[7] == ("The run was stopped before 1,200 mutants were tested; they "
                                                       "count as not detected.")
    doc["modules"][0] |= {"measured_by": "python bench/mutation.py", "wall_seconds": 2781.7}
    doc["modules"][1] |= {"measured_by": "python bench/mutation.py --modules client", "wall_seconds": 1200.0}
    del doc["not_checked"]
    assert render("mutation", doc).splitlines()[7] == (
        "The modules were measured by separate runs (a module's own code unchanged since): manifest by `python "
        "bench/mutation.py` (46.4 min); client by `python bench/mutation.py --modules client` (20.0 min).")
    doc["modules"][1]["measured_by"] = "python bench/mutation.py"
    assert len(render("mutation", doc).splitlines()) == 7  # one run: no such line
