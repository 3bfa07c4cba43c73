"""Searching what was loaded, on both engines: filtered searches that still return k rows, evaluate's
recall and latency and the setting it chooses, which search then uses (with rescoring for b1),
and search working for a SELECT-only user."""
from __future__ import annotations

import logging

import pytest
from clickhouse_server import ANALYST
from test_load_index import SMALL, load

from laion_ingest import datasets, search_quality
from laion_ingest import evaluate as evaluate_module
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError
from laion_ingest.evaluate import evaluate
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.search import (
    Filters,
    hits,
    recall,
    row_vector,
    search,
    tuned_settings,
    with_condition,
)

KINDS = evaluate_module.kinds(datasets.get("laion400m"))


def test_a_filtered_search_returns_k_rows_when_k_rows_match(mirror, engine_env):
    """A filter keeping ~90 % of rows (NSFW = 'UNLIKELY'): the index's own top k, filtered after,
    came back short for some queries; the search returns k matching rows every time, those of an
    exact scan of the matching rows but for the graph's own misses."""
    load(mirror, 1)  # one part: its graph's top k is all the index gives before the filter
    unlikely = Filters(nsfw=("UNLIKELY",))
    short, recalls = 0, []
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
        for row in range(0, 300, 10):
            target = row_vector(ch, "text_embedding", 1, row)
            naive = ch.query("SELECT id FROM laion WHERE NSFW = 'UNLIKELY' ORDER BY cosineDistance(image_embedding,"
                             " {t:Array(Float32)}) LIMIT 10", t=target)
            short += len(naive) < 10
            hits = search(ch, target, k=10, filters=unlikely)
            exact = search(ch, target, k=10, filters=unlikely, exact=True)
            assert len(hits) == 10
            assert ch.query("SELECT countIf(NSFW = 'UNLIKELY') FROM laion WHERE id IN {ids:Array(UInt64)}",
                            ids=[h.id for h in hits])[0][0] == 10
            recalls.append(recall(hits, exact))
        rare = Filters(nsfw=("NSFW",), min_width=900)  # ~0.4 % of rows: scanned exactly
        assert search(ch, target, k=10, filters=rare) == search(ch, target, k=10, filters=rare, exact=True)
    # the rows are those of the exact scan but for a graph's misses (an M=8 graph on tight clusters can
    # leave a row unreachable, and its build is multi-threaded, so which one varies from run to run)
    assert sum(recalls) / len(recalls) >= 0.95
    assert short > 0  # the problem is real on this data


def test_evaluate_measures_recall_and_latency_and_search_uses_its_choice(mirror, engine_env, tmp_path):
    """Recall against the exact scan for several ef values, written to laion_search_quality and
    drawn as a PNG; the smallest ef reaching the target is chosen, and search uses it."""
    for shard in (0, 1, 2):
        load(mirror, shard)
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
        result = evaluate(ch, queries=20, k=10, ef_values=(1, 64, 256), target_recall=0.9, plot=tmp_path / "q.png")
        stored = ch.query("SELECT kind, ef, recall, p50_ms > 0, chosen FROM laion_search_quality ORDER BY kind, ef")
        # measured on two shards' parts, through their indexes: the rest of the table is not scanned
        assert ch.query("SELECT DISTINCT shards FROM laion_search_quality") == [([0, 1],)]
        plan = ch.query("EXPLAIN indexes = 1 " + with_condition("search_ann", "shard IN {shards:Array(UInt16)}"),
                        column="image_embedding", target=[0.1] * 512, k=10, shards=[0, 1])
        plan = "\n".join(r[0] for r in plan)
        assert "image_index" in plan and "Parts: 2/3" in plan
    assert [(kind, ef) for kind, ef, *_ in stored] == [(kind, ef) for kind in ("image→image", "text→image")
                                                        for ef in (1, 64, 256)]
    recalls = {(kind, ef): r for kind, ef, r, *_ in stored}
    assert recalls[("text→image", 256)] >= 0.9 and all(fast for *_, fast, _ in stored)
    chosen = [ef for _, ef, *_, c in stored if c]
    reaching = [ef for ef in (1, 64, 256) if min(recalls[(kind, ef)] for kind in ("text→image", "image→image")) >= 0.9]
    assert chosen and set(chosen) == {result["chosen_ef"]} == {min(reaching)}
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with ClickHouse() as ch:
        assert search_quality.chosen_settings(ch) == {"hnsw_candidate_list_size_for_search": result["chosen_ef"]}


OLD_QUALITY_TABLE = """CREATE TABLE laion_search_quality (run_id String, measured_at DateTime64(3, 'UTC') DEFAULT
    now64(3), index_type String, kind LowCardinality(String), ef UInt32, k UInt32, queries UInt32, shards Array(UInt16),
    recall Float64, p50_ms Float64, p95_ms Float64, exact_p50_ms Float64, target_recall Float64, chosen UInt8)
    ENGINE = MergeTree ORDER BY (measured_at, kind, ef)"""  # as the build before rescoring was measured made it


def test_search_reads_only_and_an_older_quality_table_gets_a_clear_fix(mirror, engine_env, request, caplog):
    """Searching creates nothing, so a connection with SELECT alone searches. A laion_search_quality
    made before rescoring was measured does not break search (a warning, the default settings), and
    evaluate refuses it naming the fix rather than failing on a missing column."""
    load(mirror, 0)
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
        target = row_vector(ch, "text_embedding", 0, 3)
        expected = search(ch, target, k=5, tuned={"hnsw_candidate_list_size_for_search": 256})
        if ch.is_server:  # an analyst's connection: SELECT, nothing else
            database = engine_env["AIRFLOW_CONN_LAION_CLICKHOUSE"].rsplit("/", 1)[1]
            analyst = request.getfixturevalue("clickhouse_server").connection_uri(database, user=ANALYST)
            with pytest.MonkeyPatch.context() as monkeypatch:
                monkeypatch.setenv("AIRFLOW_CONN_LAION_CLICKHOUSE", analyst)
                with ClickHouse() as reader:
                    assert search(reader, target, k=5) == expected
        ch.query(OLD_QUALITY_TABLE)
        ch.query("INSERT INTO laion_search_quality (run_id, kind, ef, chosen) VALUES ('old', 'text→image', 32, 1)")
        with caplog.at_level(logging.WARNING, logger="laion_ingest"):
            assert tuned_settings(ch) == {"hnsw_candidate_list_size_for_search": 256}
            assert search(ch, target, k=5) == expected
        assert "DROP TABLE laion_search_quality" in caplog.text
        with pytest.raises(PermanentError, match="made by an earlier version.*DROP TABLE laion_search_quality"):
            evaluate(ch, queries=5, k=5, ef_values=(64,), target_recall=0.5)
        ch.query("DROP TABLE laion_search_quality")
        assert evaluate(ch, queries=5, k=5, ef_values=(64,), target_recall=0.5)["chosen_ef"] == 64


def test_a_b1_index_is_measured_with_rescoring_and_search_uses_the_choice(mirror, engine_env):
    """A binary-quantized index ranks by Hamming distance: evaluate also measures each ef with
    rescoring (more candidates, exact distances), chooses it when plain search misses the target,
    and search then answers with it."""
    for shard in (0, 1):
        load(mirror, shard)
    with ClickHouse() as ch:
        build_indexes(ch, IndexParams(quantization="b1", m=8, ef_construction=32))
        result = evaluate(ch, queries=20, k=10, ef_values=(64,), target_recall=0.9)
        recalls = {(r["kind"], r["rescore"]): r["recall"] for r in result["rows"]}
        assert set(recalls) == {(kind, m) for kind in KINDS for m in (0, 4, 16)}
        assert all(recalls[(kind, 16)] > recalls[(kind, 0)] for kind in KINDS)
        assert result["chosen_rescore"] in (4, 16) and min(recalls[(kind, result["chosen_rescore"])]
                                                            for kind in KINDS) >= 0.9
        assert tuned_settings(ch) == {"hnsw_candidate_list_size_for_search": 64, "vector_search_with_rescoring": 1,
                                      "vector_search_index_fetch_multiplier": result["chosen_rescore"]}
        targets = [t for (t,) in ch.run("sample_vectors", column="text_embedding", n=10, shards=[0, 1])]
        by_default = [recall(search(ch, t), search(ch, t, exact=True)) for t in targets]
        statement = with_condition("search_ann", "")
        plain = [recall(hits(ch, statement, {"column": "image_embedding", "target": list(t), "k": 10},
                             hnsw_candidate_list_size_for_search=64), search(ch, t, exact=True)) for t in targets]
        assert sum(by_default) / 10 >= 0.9 > sum(plain) / 10
