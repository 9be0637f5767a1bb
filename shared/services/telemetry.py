"""Names shared by the code that emits metrics and events and the stack that graphs and routes them."""

from __future__ import annotations

METRICS_NAMESPACE = "Shoal"
SERVICE_NAME = "shoal"

# CloudWatch metrics (EMF through Powertools Metrics); every one carries the "cluster" dimension.
METRIC_QUEUED_JOBS = "QueuedJobs"
METRIC_RUNNING_JOBS = "RunningJobs"
METRIC_NODES = "Nodes"  # extra dimensions: node_type, market, state
METRIC_HOURLY_COST = "HourlyCost"
METRIC_DECISION_LATENCY = "DecisionLatency"  # milliseconds
METRIC_DECISIONS = "ScalingActions"
METRIC_LAUNCH_FAILURES = "LaunchFailures"
METRIC_SPENT = "Spent"  # USD over the cluster's life, by the scaler's spend ledger (the budget alarm watches it)
METRIC_JOB_WAIT = "JobWaitSeconds"
# The preemption budget: queued or running jobs reclaimed from spot, and those past their maxPreemptions.
METRIC_PREEMPTED_JOBS = "PreemptedJobs"
METRIC_ON_DEMAND_ONLY_JOBS = "OnDemandOnlyJobs"
METRIC_LEASE_HOURS_LEFT = "LeaseHoursLeft"  # until the first of lease and idle lease runs out (then TeardownCluster)
METRIC_SPOT_PLACEMENT_SCORE = "SpotPlacementScore"  # extra dimensions: offer (its key), zone; 1-10
METRIC_VCPU_QUOTA_USED = "VcpuQuotaUsedPercent"  # extra dimension: quota (its name); the account's use, all of it

# EventBridge events Shoal itself puts: source and detail-types.
EVENT_SOURCE = "shoal"
EVENT_DEMAND_CHANGED = "Shoal Demand Changed"
