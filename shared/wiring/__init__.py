"""The one place that wires: every deployable unit's adapters are assembled here, from one settings reader.

``settings``       reads every ``SHOAL_*`` variable (the functions', ``shoal submit``'s and the worker's)
``control_plane``  ``build_control_plane`` (evaluate_scaling and on_instance_event: what a round talks to),
                   ``idempotency_store``, ``build_lifecycle_step`` (LaunchCluster/TeardownCluster's ports)
``clients``        ``build_submit_client`` (``shoal submit``, the Python API, Toil, the local cloud), and the
                   CLI's: ``build_status_sources`` (``shoal status``), ``build_node_store`` (ssh/rsync-cluster)
``agent``          ``build_agent_ports`` (what ``shoal-worker`` and the local cloud's agents talk to)

Services and the domain import none of this; the edges (``functions``, ``shared.cli``, ``shared.worker``'s
entry point, ``shared.local``, ``shared.toil``) import it and nothing from ``shared.adapters`` directly.
"""
