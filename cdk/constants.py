"""Every number and name the stack is built from, in one place, each with the reason for its value."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from shared.adapters.ec2_fleet import CLUSTER_TAG, ROOT_DEVICE
from shared.adapters.state_table import PK, SK, TTL_ATTRIBUTE

__all__ = [
    "CLUSTER_TAG",
    "PK",
    "ROOT_DEVICE",
    "SK",
    "TTL_ATTRIBUTE",
]

# ---- settings --------------------------------------------------------------------------------------
SETTINGS_FILE = "shoal.toml"  # the default cluster settings file, next to app.py
STACK_NAME = "shoal-{cluster}"  # one stack per cluster

# ---- Lambda ----------------------------------------------------------------------------------------
# The Powertools layer is referenced by its public ARN (no lookup at synth). Runtime, architecture and
# layer build must agree: the layer is built per Python version and CPU.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
POWERTOOLS_LAYER_VERSION = 27  # cdk.json context "powertoolsLayerVersion" overrides it
FUNCTION_TIMEOUT_SECONDS = 60  # a round is a few describe calls, one decision and a few launches
# evaluate_scaling's reserved concurrency (-c scalerReservedConcurrency=N; 0: none). Rounds exclude each other
# with a lease, so two at once is already one too many doing work; the reserve is a guaranteed slot that no other
# function in the account can starve, and a cap on what a storm of triggers can cost.
SCALER_RESERVED_CONCURRENCY = 2
# Asynchronous invocations (EventBridge → Lambda) Lambda retries before the on-failure destination, and how old
# an event may get: a round is level-triggered, so a stale trigger is worth nothing (the schedule brings the next).
FUNCTION_ASYNC_RETRIES = 2
FUNCTION_MAX_EVENT_AGE_MINUTES = 30
# EventBridge → Lambda delivery retries before the rule's dead-letter queue (EventBridge's own retry policy).
TARGET_RETRY_ATTEMPTS = 8
TARGET_MAX_EVENT_AGE_MINUTES = 30
FAILURE_QUEUE_RETENTION_DAYS = 14  # failed invocations and undelivered events wait this long for a look
FUNCTION_MEMORY_MB = 512  # the catalog and pydantic models load faster with more CPU, which comes with memory
LOG_RETENTION = logs.RetentionDays.ONE_MONTH  # every log group: functions, workers, flow logs
# What goes into the functions' code asset: the repository root minus everything but these packages.
CODE_PACKAGES = ("shared", "functions")

# ---- queue and table -------------------------------------------------------------------------------
# The queue is consumed by the workers' agents, which set their own visibility per receive and renew it
# while a job runs. The queue's default visibility still follows AWS's rule for Lambda consumers (at
# least 6x the longest function timeout) so that a function reading it never sees a message twice
# within one invocation's retries.
VISIBILITY_TIMEOUT_FACTOR = 6
QUEUE_RETENTION_DAYS = 14  # the SQS maximum: a job waits for capacity as long as SQS allows
# The agents dead-letter malformed and exhausted jobs themselves, with a reason. The redrive policy is
# only the backstop for messages no agent can settle (a worker that crashes on it every time). It must
# be high because a message also counts a receive each time a worker too small for it looks at it and
# puts it back: a low value would dead-letter big jobs that are merely waiting for a big node.
MAX_RECEIVE_COUNT = 1000  # the SQS maximum

# ---- workers ---------------------------------------------------------------------------------------
WORKER_WORK_DIR = "/var/lib/shoal/work"  # the agent's default; bind-mounted at the same path in the container
IMDS_HOP_LIMIT = 2  # one hop more than the host, so the appliance container reaches IMDSv2
# ROOT_DEVICE is the fleet adapter's: a launch that sizes the root volume names the device the template does.
# Every catalog instance type is x86_64 (see shared/domain/catalog_data.py), hence the x86_64 AMI.
CONTAINER_STOP_TIMEOUT_SECONDS = 60  # SIGTERM evacuates: running jobs go back to the queue within seconds
APPLIANCE_UID = 10001  # the appliance image's user (Dockerfile): it owns the bind-mounted work directory
CONTAINER_NAME = "shoal-agent"

# ---- network ---------------------------------------------------------------------------------------
VPC_CIDR = "10.64.0.0/16"
VPC_MAX_AZS = 2  # all an account-agnostic stack can name without an AZ lookup at synth time
SUBNET_CIDR_MASK = 20  # 4,096 addresses per zone
NAT_GATEWAYS = 1  # worker_network "nat": one NAT gateway for the cluster (one per zone doubles its hourly cost)
# worker_network "endpoints": interface endpoints for everything a worker's boot and agent call (tests/cdk/
# test_worker_reach.py derives the list from the user data): the agent's queue (sqs), the job role's credentials
# (sts: the AWS CLI v2 calls the regional endpoint), the CloudWatch agent (logs), Session Manager (ssm, ssmmessages,
# ec2messages) and the appliance (ecr.api for the login, ecr.dkr for the manifests). S3 and DynamoDB are gateway
# endpoints (free): the code asset, Amazon Linux's package repositories (S3 buckets) and ECR's image layers.
INTERFACE_ENDPOINTS = ("sqs", "sts", "ssm", "ssmmessages", "ec2messages", "ecr.api", "ecr.dkr", "logs")
# worker_network "endpoints" with an appliance on quay.io (Toil's default): an ECR pull-through cache rule per cluster
# (a rule's prefix is unique in a registry) so workers pull REGISTRY/PREFIX/ucsc_cgl/toil:TAG; ECR fetches from quay.io.
PULL_THROUGH_UPSTREAM = "quay.io"  # the only upstream that needs no credentials and that Toil publishes to
PULL_THROUGH_UPSTREAM_REGISTRY = "quay"  # CloudFormation's UpstreamRegistry name for quay.io
PULL_THROUGH_PREFIX = "shoal-{cluster}-quay"  # at most 30 characters; longer names use a hash (node_boot)

# ---- triggers --------------------------------------------------------------------------------------
# Scaling rules are deployed enabled so a cluster scales as soon as it is deployed; issue 5's
# LaunchCluster/TeardownCluster state machines enable and disable them at run time.
SCALING_RULES_ENABLED = True
ALARM_PERIOD_SECONDS = 60  # SQS publishes its metrics every minute
# EC2's detail-types → the short name in the rule's name (rule names are at most 64 characters).
EC2_EVENTS = {
    "EC2 Instance State-change Notification": "instance-state",
    "EC2 Spot Instance Interruption Warning": "spot-interruption",
    "EC2 Instance Rebalance Recommendation": "rebalance",
}

# ---- observability ---------------------------------------------------------------------------------
DLQ_ALARM_THRESHOLD = 0  # any dead-lettered job needs a look
FAILURE_ALARM_THRESHOLD = 0  # any failed invocation or undelivered event needs a look
THROTTLE_ALARM_THRESHOLD = 0  # a throttled round means the reserved concurrency was exceeded
LAUNCH_FAILURE_ALARM_THRESHOLD = 3  # failed launches within one window: "repeated", not one capacity blip
LAUNCH_FAILURE_ALARM_WINDOW_MINUTES = 15
DASHBOARD_PERIOD_SECONDS = 60
