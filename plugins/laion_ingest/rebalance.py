"""`python -m laion_ingest rebalance`: after nodes were added to the cluster, move each shard to the
node the placement rule gives it now.

Placement keeps a loaded shard on the node that holds it (ClickHouse.node_for), so adding nodes
moves nothing by itself: the old nodes keep their shards and the RAM their graphs need, and only
new shards reach the new nodes. This moves every shard whose node is not its rule's (shard modulo
the number of nodes), one at a time, the way a load publishes one: the rule's node copies the
shard's part from the node holding it into a staging table through cluster() (the remote_servers'
credentials, so no secret is written into SQL), checks its rows, and swaps it in with REPLACE
PARTITION; then the old node drops its copy. Until that drop, a second or so, reads through `laion`
count the shard twice; if the command stops there, both copies stay and the next rebalance finishes
the move. The tables and indexes are declared on new nodes first, and the moved parts get their
graphs on their new node at the end. Run it while no DAG run is loading.
"""
from __future__ import annotations

import time

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.index import add_indexes, declared_params, materialize_indexes
from laion_ingest.load import check_disk_space, create_tables, publish
from laion_ingest.redaction import logger

log = logger(__name__)


def rebalance(ch: ClickHouse) -> list[dict]:
    """Move every shard that is not only on its rule's node; returns {shard, rows, from, to} of each."""
    if not ch.cluster:
        log.info("no cluster (LAION_CLICKHOUSE_CLUSTER is not set): one node holds every shard")
        return []
    create_tables(ch)
    nodes = {node.node: node for node in ch.each_node()}  # every node must answer: a shard may be on any
    params = declared_params(ch)
    if params:
        add_indexes(ch, params)
    held: dict[int, dict[int, int]] = {}  # shard -> {node: rows}
    for number, node in nodes.items():
        for shard, rows, _ in node.run("table_shards"):
            held.setdefault(shard, {})[number] = rows
    todo = {shard: holders for shard, holders in sorted(held.items()) if list(holders) != [ch.rule(shard)]}
    log.info("%d of %d shard(s) to move to the node the rule gives them (shard modulo %d nodes)",
             len(todo), len(held), len(nodes))
    moved = []
    for done, (shard, holders) in enumerate(todo.items(), 1):
        started, target = time.monotonic(), nodes[ch.rule(shard)]
        others = sorted(holders.keys() - {target.node})
        rows = holders.get(target.node) or holders[others[0]]
        if target.node not in holders:
            check_disk_space(target, shard, rows)
            publish(target, shard, rows, "stage_insert_node", cluster=ch.cluster, database=ch.database,
                    source=others[0])
        for number in others:
            nodes[number].run("drop_shard", shard=shard)
        moved.append({"shard": shard, "rows": rows, "from": others, "to": target.node})
        log.info("shard %d (%d of %d): %d rows from node %s to node %d in %.1f s", shard, done, len(todo), rows,
                 ", ".join(map(str, others)), target.node, time.monotonic() - started)
    if moved and params:
        materialize_indexes(ch)
    return moved
