"""Several hotline nodes behind Kamailio on one PostgreSQL database (issue 17).

- `membership.py` (pure): a node's state as others see it — up, draining or down — from its
  row in `cluster_nodes` and the time of its last heartbeat.
- `pg_node.py` (adapter): this node's heartbeat and drain state in `cluster_nodes`, the
  agents' bindings read from Kamailio's usrloc table, and the registrar that offers them.
- `runner.py`: `make cluster` — PostgreSQL, Kamailio and N nodes on one machine.
"""
