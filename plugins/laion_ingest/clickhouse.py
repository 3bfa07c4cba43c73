r"""One small interface to ClickHouse, whichever engine runs it: the one seam for "which ClickHouse".

`ClickHouse()` opens the embedded engine (chdb, the default) or, with LAION_CLICKHOUSE_CONN_ID, a
server reached through the Airflow connection of the official ClickHouse provider. Both are driven
by the same client library, clickhouse-connect (its chdb backend in-process, HTTP for a server), so
query parameters ({name:Type}) are formatted and results decoded by one maintained codec: a string
with backslashes, tabs or `\N` reaches either engine unchanged, and a stored non-UTF-8 string
comes back as its hex digits instead of crashing the reader. chdb's own parameter passing unescaped
such strings (a ledger error holding `b'\x93NUMPY'` became invalid UTF-8), and the provider's
client sent a dict as JSON where the SQL asks for a Map: neither difference could be seen while the
engines had two code paths.

On a cluster (LAION_CLICKHOUSE_CLUSTER, the name of a cluster in the servers' remote_servers) the
connection's node holds the ledger and a Distributed `laion` over every node's `laion_local` (and
likewise for each dataset's table);
`each_node()` and `node_for(shard)` open the nodes themselves, with the same connection's
credentials, for what happens per node (loads, index builds). Without a cluster they are this
connection, so the stages never ask which kind of ClickHouse they run on. DDL meant for every node
goes through `on_every_node()`: one ON CLUSTER statement where the cluster has Keeper, else the
statement on each node in turn. The engines themselves, and the one place a statement runs, are
engines.py.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from laion_ingest import datasets, settings
from laion_ingest.datasets import Dataset
from laion_ingest.engines import Chdb, Server, execute
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger

log = logger(__name__)


def sql(name: str, **fragments: str) -> list[str]:
    """The statements of include/sql/<name>.sql, comments dropped, split on ';' at line ends. A file's
    bare placeholders ({condition}, {source}) are written in from `fragments`: fixed pieces of SQL that
    the package chooses (a filter, a table function), never input, whose values stay parameters."""
    text = re.sub(r"--[^\n]*", "", (settings.sql_dir() / f"{name}.sql").read_text())
    for placeholder, fragment in fragments.items():
        if "{" + placeholder + "}" not in text:
            raise ValueError(f"include/sql/{name}.sql has no {{{placeholder}}} placeholder")
        text = text.replace("{" + placeholder + "}", fragment)
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


def _inline(statement: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Write {name:Identifier} and {name:UInt*} parameters into the text. ClickHouse's parser
    takes parameters in most places, but not as OPTIMIZE TABLE's table, REPLACE PARTITION's source
    or a skip index's arguments. Only plain names and whole numbers are inlined, checked, so
    nothing else can enter the SQL this way; every other parameter is sent as a parameter."""
    def inline(match: re.Match) -> str:
        name, kind = match.groups()
        value = params[name]
        if kind == "Identifier" and IDENTIFIER.fullmatch(str(value)):
            return str(value)
        if kind.startswith("UInt") and isinstance(value, int) and value >= 0:
            return str(value)
        raise ValueError(f"parameter {name}: {value!r} is not a valid {kind}")

    statement = re.sub(r"\{(\w+):(Identifier|UInt\d+)\}", inline, statement)
    # Only what the statement still names: clickhouse-connect formats a statement that has
    # parameters but no {name:Type} with Python's % operator.
    return statement, {k: v for k, v in params.items() if "{" + k + ":" in statement}


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The table a DDL statement creates or alters, after which ON CLUSTER goes.
DDL_TABLE = re.compile(r"^((?:CREATE TABLE IF NOT EXISTS|ALTER TABLE)\s+\S+)", re.IGNORECASE)


def on_cluster(statement: str) -> str:
    """The statement as distributed DDL: ON CLUSTER {cluster} after the table it creates or alters."""
    ddl, found = DDL_TABLE.subn(r"\1 ON CLUSTER {cluster:Identifier}", statement, count=1)
    if not found:
        raise ValueError(f"not a CREATE TABLE IF NOT EXISTS or ALTER TABLE statement: {statement[:80]}")
    return ddl


class NodeUnreachable(ConnectionError):
    """A node of the cluster did not answer; transient: the task retries."""


class ClickHouse:
    """A connection for one unit of work on one dataset: `with ClickHouse() as ch: ch.run("table_rows")`.
    SQL files name the dataset's tables by parameter, and run() fills them in: {table} is the MergeTree
    table this connection loads and indexes (laion, or laion_local on a cluster's node), {search_table}
    the table queries read (laion, a Distributed table on a cluster), {ledger} and {quality} its
    ledger and search-quality tables, {dim} its vectors' dimension. The dataset is LAION_DATASET's
    unless given (datasets.py)."""

    def __init__(self, dataset: Dataset | None = None, engine: Chdb | Server | None = None,
                 node: int | None = None):
        self.dataset = dataset or datasets.get(settings.dataset())
        self._engine, self.node = engine, node
        self._nodes: dict[int, ClickHouse] = {}

    @property
    def table(self) -> str:
        """The MergeTree table: on a cluster each node's <table>_local, under the Distributed <table>."""
        return self.dataset.table + ("_local" if self.node is not None or self.cluster else "")

    @property
    def names(self) -> dict[str, Any]:
        """The dataset's names and numbers, as the SQL files' parameters."""
        d = self.dataset
        return {"table": self.table, "search_table": d.table, "ledger": d.ledger, "quality": d.search_quality,
                "tune_results": d.tune_results, "dim": d.dim}

    @property
    def is_server(self) -> bool:
        return self._engine.is_server

    @property
    def cluster(self) -> str | None:
        return settings.cluster() if self.is_server else None

    def __enter__(self) -> ClickHouse:
        if self._engine is None:
            conn_id = settings.clickhouse_conn_id()
            self._engine = Server(conn_id) if conn_id else Chdb(settings.chdb_path())
        return self

    def __exit__(self, *exc) -> None:
        for node in self._nodes.values():
            node._engine.close()
        self._engine.close()

    @functools.cached_property
    def database(self) -> str:
        return self.query("SELECT currentDatabase()")[0][0]

    @functools.cached_property
    def keeper(self) -> bool:
        """Whether this cluster's DDL goes ON CLUSTER: the connection's node has a Keeper session.
        Without Keeper (e.g. servers that only name each other in remote_servers) ON CLUSTER fails,
        so the same statements run on each node instead."""
        if not self.cluster:
            return False
        uptime = self.run("keeper_session")[0][0]
        log.info("cluster %s: %s", self.cluster, f"Keeper session up {uptime} s; DDL runs ON CLUSTER" if uptime
                 else "node has no Keeper session; DDL runs on each node")
        return uptime > 0

    def on_every_node(self, file: str, /, fragments: dict[str, str] | None = None, **params: Any) -> None:
        """DDL of include/sql/<file>.sql on every node of the cluster (on this connection without one).
        With Keeper and every node up it is one ON CLUSTER statement, which the cluster's DDL queue
        records. Otherwise each node that answers runs it in turn: the
        statements are IF NOT EXISTS, and a node that is down gets its tables when a shard is next
        loaded on it (ON CLUSTER would instead hold this task for distributed_ddl_task_timeout)."""
        nodes = self.each_node(reachable=True)
        if self.keeper and len(nodes) == self.node_count:  # keeper is False without a cluster
            self._run(self.on_cluster_statements(file, fragments, **params), {**self.names, **params})
            return
        for node in nodes:
            node.run(file, fragments, **params)

    def on_cluster_statements(self, file: str, /, fragments: dict[str, str] | None = None,
                              **params: Any) -> list[str]:
        """The statements of include/sql/<file>.sql as this cluster's ON CLUSTER DDL on <table>_local, with
        names and numbers written in (strings stay {name:String} parameters)."""
        params = {**self.names, "cluster": self.cluster, **params}
        return [_inline(on_cluster(s), params)[0] for s in sql(file, **(fragments or {}))]

    def each_node(self, reachable: bool = False) -> list[ClickHouse]:
        """A connection to every node of the cluster, in remote_servers' order; [self] without one.
        A node that does not answer raises NodeUnreachable, or is left out with reachable=True."""
        if not self.cluster:
            return [self]
        if not self._nodes:
            self._check_cluster()
        nodes, down = [], []
        listed = self.run("cluster_nodes", cluster=self.cluster)
        self.node_count = len(listed)
        for number, host, port in listed:
            if not port:
                down.append(f"node {number} ({host})")
                continue
            if number not in self._nodes:
                engine = Server(settings.clickhouse_conn_id(), host, port)
                self._nodes[number] = ClickHouse(self.dataset, engine, node=number)
            nodes.append(self._nodes[number])
        if down and not reachable:
            raise NodeUnreachable(f"cluster {self.cluster}: {', '.join(down)} did not answer")
        if down:
            log.warning("cluster %s: %s did not answer; going on without", self.cluster, ", ".join(down))
        return nodes

    def rule(self, shard: int) -> int:
        """The placement rule: the node (shard_num, from 1) of a shard not loaded yet, shard modulo the
        number of nodes, as the Distributed table's sharding key says. After each_node()."""
        return shard % self.node_count + 1

    def _check_cluster(self) -> None:
        """Refuse, before anything is made, a cluster the node does not know, or one with replicas."""
        shape = {name: replicas for name, _, replicas in self.run("cluster_shape")}
        if self.cluster not in shape:
            raise PermanentError(f"cluster {self.cluster} is not in the remote_servers of the connection's node,"
                                 f" which has: {', '.join(shape) or 'none'} (LAION_CLICKHOUSE_CLUSTER)")
        if shape[self.cluster] > 1:
            raise PermanentError(
                f"cluster {self.cluster} has up to {shape[self.cluster]} replicas per shard; {self.table} is a plain"
                " MergeTree loaded on one node per shard, so a Distributed read could go to a replica without the"
                " rows. Set LAION_CLICKHOUSE_CLUSTER to a cluster of one replica per shard (docs/server.md, Scale out)")

    def node_for(self, shard: int) -> ClickHouse:
        """The node a shard is loaded on: the one that holds it already (the rule's, if a stopped move
        left it on two), else shard modulo the number of nodes (the Distributed table's sharding rule).
        So a reload replaces a shard where it is, and adding nodes moves nothing until rebalance.py
        does. Only the rule's node needs to answer: shards of the nodes that do load while another is
        down (after nodes were added, a shard on the node that is down is then loaded a second time,
        and the reload the next plan asks for, once that node is back, drops the other copy)."""
        if not self.cluster:
            return self
        nodes = self.each_node(reachable=True)
        holding = [n for n in nodes if any(s == shard for s, _, _ in n.run("table_shards"))]
        ruled = self.rule(shard)
        if holding:
            return next((n for n in holding if n.node == ruled), holding[0])
        for node in nodes:
            if node.node == ruled:
                return node
        raise NodeUnreachable(f"shard {shard}: its node, {ruled} of cluster {self.cluster}, did not answer")

    def run(self, file: str, /, fragments: dict[str, str] | None = None, **params: Any) -> list[tuple]:
        """Run include/sql/<file>.sql (its placeholders written in from `fragments`) with query
        parameters, the dataset's names among them; the rows of its last statement."""
        return self._run(sql(file, **(fragments or {})), {**self.names, **params})

    def _run(self, statements: list[str], params: dict[str, Any]) -> list[tuple]:
        rows: list[tuple] = []
        for statement in statements:
            rows = execute(self._engine.client, *_inline(statement, params))
        return rows

    def query(self, statement: str, **params: Any) -> list[tuple]:
        """Run one statement given as text, the dataset's names among its parameters: a statement
        assembled from a SQL file (search adds its SETTINGS), and tests' ad-hoc checks."""
        return execute(self._engine.client, *_inline(statement, {**self.names, **params}))
