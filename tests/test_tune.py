"""`tune` on both engines, on one shard of the mirror's hard variant (thousands of clusters, a
power-law spectrum, text offset from images), where graphs differ: the grid measured, a
recommendation that reaches the target, the recall it claims equal to a recomputation from the
source files with numpy, every candidate stored, the JSON's keys, and budgets that bind."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_cli import cli

from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.index import IndexParams, add_indexes, materialize_indexes
from laion_ingest.ledger import Attempt
from laion_ingest.sample.mirror import generate_mirror
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search_quality import search_settings
from laion_ingest.tune import KEYS, Budget, Candidate, plan, project_seconds, recommend, tune

LAION400M = datasets.get("laion400m")
ROWS, TARGET = 4000, 0.9
GRID = ((8, 16), (16, 64), ("bf16", "i8"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, module_engine):
    base = tmp_path_factory.mktemp("tune")
    generate_mirror(base / "mirror", [0], ROWS, hard=True)
    with MirrorServer(base / "mirror") as server:
        pipeline.ingest(Attempt(0, LAION400M), server.url)
    with ClickHouse() as ch:
        result = tune(ch, target_recall=TARGET, queries=20, grid=GRID, plot=base / "tune.png")
    return {"result": result, "mirror": base / "mirror", "plot": base / "tune.png"}


def test_the_grid_is_measured_and_the_cheapest_reaching_the_target_is_recommended(tuned):
    result = tuned["result"]
    settings = {(c.quantization, c.m, c.ef_construction) for c in result["candidates"]}
    assert ("bf16", 64, 256) in settings and ("bf16", 8, 16) in settings  # the seed, and the grid's start
    for c in result["candidates"]:
        assert c.build_rows_per_s > 0 and c.p50_ms > 0
        formula = 512 * {"bf16": 2, "i8": 1}[c.quantization] + c.m * 8  # ClickHouse's, index.index_bytes
        assert 0.8 * formula < c.index_bytes_per_row < 1.3 * formula, c
    chosen = result["recommended"]
    assert chosen.reached and chosen.recall_at_10 >= TARGET
    reached = [c for c in result["candidates"] if c.reached]
    assert chosen.build_rows_per_s == max(c.build_rows_per_s for c in reached)  # fewest core-hours
    assert tuned["plot"].read_bytes()[:4] == b"\x89PNG"
    with ClickHouse() as ch:
        stored = ch.query("SELECT count(), sum(recommended), any(shard) FROM laion_tune")
        assert stored == [(len(result["candidates"]), 1, 0)]
        assert ch.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                        " AND name = 'laion_tune_scratch'")[0][0] == 0  # nothing left behind


def test_the_claimed_recall_is_what_the_recommended_index_gives(tuned):
    """The recommended setting built on the table itself, searched at the ef it names with the
    queries tune used, against exact neighbours computed with numpy from the source files."""
    result, chosen = tuned["result"], tuned["result"]["recommended"]
    images = np.load(tuned["mirror"] / "img_emb/img_emb_0.npy").astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    with ClickHouse() as ch:
        add_indexes(ch, IndexParams("cosineDistance", chosen.quantization, chosen.m, chosen.ef_construction))
        materialize_indexes(ch, every_shard=True, poll_seconds=0.2)
        recalls = []
        for query in result["queries"]:
            q = np.asarray(query, np.float32)
            exact = set(np.argsort(-(images @ (q / np.linalg.norm(q))))[:10].tolist())
            statement = ("SELECT row FROM laion ORDER BY cosineDistance(image_embedding, {t:Array(Float32)}) LIMIT 10"
                         " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in
                                                  search_settings(chosen.ef_search, chosen.rescore_multiplier).items()))
            found = {row for (row,) in ch.query(statement, t=[float(x) for x in query])}
            recalls.append(len(found & exact) / 10)
    recall = float(np.mean(recalls))
    # A graph built again is another graph: at 4,000 rows and M=8..16 its recall@10 over 20 queries moves
    # by several points from one build to the next (+0.00 .. +0.065 against the claim over eight runs,
    # -0.05 in one clean-clone run), so the claim is checked within that spread.
    assert recall >= TARGET - 0.06  # the index built with the tuned setting reaches the target
    assert chosen.recall_at_10 - 0.07 <= recall <= chosen.recall_at_10 + 0.1


def test_the_json_has_the_documented_keys(tuned):
    result = tuned["result"]
    out = plan(result, LAION400M, Budget())
    assert set(out) == {"seed", "recommended"}
    assert set(out["seed"]) == {"index_gb_per_column", "build_core_hours"}
    assert out["recommended"]["build_core_hours"] < out["seed"]["build_core_hours"]
    assert set(result["recommended"].public()) == set(KEYS)
    json.dumps([c.public() for c in result["candidates"]])


def test_plan_uses_what_tune_measured(tuned):
    """plan sizes a tuned setting from tune's bytes per row and build rate, on the engine the
    measurement lives in; a setting tune never measured stays on the formula, and says so."""
    chosen = tuned["result"]["recommended"]
    out = cli("plan", "--m", str(chosen.m), "--ef-construction", str(chosen.ef_construction),
              "--quantization", chosen.quantization).stdout
    assert re.search(r"index bytes and build rate: measured by tune on shard 0 \([\d,]+ rows, \d{4}-\d\d-\d\d\)", out)
    rows = LAION400M.shards * LAION400M.rows_per_shard
    assert f"index RAM per column: {rows * chosen.index_bytes_per_row / 1e9:,.0f} GB in all" in out
    assert f"index build: about {2 * rows / chosen.build_rows_per_s / 3600:,.0f} core-hours" in out
    out = cli("plan", "--m", "32", "--ef-construction", "128").stdout
    assert "index bytes and build rate: ClickHouse's formula and this project's build rate" in out


def candidate(m: int, quantization: str, rows_per_s: float, reached: bool = True) -> Candidate:
    bytes_per_row = 512 * {"bf16": 2, "i8": 1, "b1": 1 / 8}[quantization] + m * 8
    return Candidate(m, 64, quantization, 0, rows_per_s, bytes_per_row, 64, 0.97 if reached else 0.5, 5.0, reached)


def test_a_budget_binds_the_choice_and_says_so():
    fast_big, slow_small = candidate(64, "bf16", 2000), candidate(8, "b1", 1000)
    assert recommend([fast_big, slow_small, candidate(8, "bf16", 9000, reached=False)], LAION400M, Budget()) == \
        (fast_big, "the recall target alone: it is the cheapest to build that reaches it")
    chosen, bound = recommend([fast_big, slow_small], LAION400M, Budget(ram_gb=500))
    assert chosen == slow_small and bound.startswith("the budget: bf16 M=64 ef_construction=64 needs")
    assert "over --ram-gb 500 on 1 node(s)" in bound
    chosen, bound = recommend([fast_big, slow_small], LAION400M, Budget(ram_gb=1))
    assert chosen is None and "fits the budget" in bound
    chosen, bound = recommend([fast_big], LAION400M, Budget(core_hours=1))
    assert chosen is None and "over --core-hours 1" in bound


def test_tune_with_nothing_loaded_says_so(chdb_env):
    bad = cli("tune", check=False)
    assert bad.returncode == 1 and "no shard of laion400m is loaded: load one before tuning" in bad.stderr


def test_a_time_budget_measures_the_seed_and_skips_what_would_overrun(tuned):
    """--max-hours 0: the seed's setting is still measured (every plan compares against it) and every
    other candidate is skipped, each reported with a time projected from the seed's by sqrt(M x
    ef_construction); the recommendation comes from what was measured."""
    out = cli("tune", "--max-hours", "0", "--m", "8,16", "--ef-construction", "16,64", "--quantizations", "i8",
              "--queries", "5", "--json").stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert [(c["quantization"], c["m"], c["ef_construction"]) for c in result["candidates"]] == [("bf16", 64, 256)]
    skipped = {(s["m"], s["ef_construction"]): s["projected_seconds"] for s in result["skipped"]}
    assert set(skipped) == {(8, 16), (8, 64), (16, 16), (16, 64)}  # the bf16 walk; i8 follows only what reached
    assert all(s["quantization"] == "bf16" for s in result["skipped"])
    seed_seconds = skipped[(16, 64)] / (1024 / 16384) ** 0.5
    assert seed_seconds > 0 and skipped[(8, 16)] == pytest.approx(seed_seconds * (128 / 16384) ** 0.5, abs=0.02)
    assert "skipped, as they would have ended past --max-hours 0" in out
    assert "bf16 M=8 ef_construction=16 (~" in out and "a larger --max-hours" in out
    recommended = result["recommended"]
    assert recommended is None or (recommended["m"], recommended["ef_construction"]) == (64, 256)


def test_a_candidates_time_is_projected_from_the_nearest_measured():
    """From the measured setting of the nearest build cost (M x ef_construction), the same
    quantization first: up the grid in proportion to the cost, down by its square root."""
    def params(m, ef, quantization="bf16"):
        return IndexParams("cosineDistance", quantization, m, ef)
    seconds = {params(64, 256): 2700.0, params(8, 64): 400.0, params(32, 128, "i8"): 900.0}
    assert project_seconds(params(16, 64), seconds) == pytest.approx(800)  # from M=8's, not the seed's
    assert project_seconds(params(64, 128), seconds) == pytest.approx(2700 / 2 ** 0.5)
    assert project_seconds(params(32, 128, "b1"), seconds) == pytest.approx(900)
    assert project_seconds(params(8, 64), {}) == 0  # nothing measured yet: the seed is measured whatever it costs
