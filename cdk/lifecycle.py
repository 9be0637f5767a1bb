"""Cluster launch and teardown as Step Functions state machines, readable step by step in the console.

State names read as sentences and every state has a comment. AWS calls that need no logic are direct
SDK integrations (DynamoDB status records, EventBridge rules, EC2 terminations); the steps that need
Shoal's code (capacity fallback, deadlines, the inventory check) invoke the lifecycle Lambda with an
``action``. Every failure is caught, rolled back where something was launched, recorded with its
cause, and ends the execution failed with that cause.

The two machines read side by side here; their building blocks (a Lambda step, a status write, the
scaling rules' switches, the state machine with its logs and cdk-nag reasons) are in ``lifecycle_steps``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk import lifecycle_steps
from shared.domain.cluster_state import ClusterStatus
from shared.formats import lifecycle
from shared.formats.lifecycle import LifecycleAction, result_path

ERROR_PATH = f"$.{lifecycle.ERROR}"  # where a caught failure goes
ERROR_CAUSE = f"{ERROR_PATH}.Cause"

# How long Wait states pause between checks comes from the execution's input ("poll_seconds"), read
# back by the first Lambda step with defaults (shared/services/lifecycle.py), so tests need not sleep.
THROTTLING_ERRORS = [
    "Ec2.RequestLimitExceeded",
    "Ec2.Ec2Exception",
    "ThrottlingException",
    "Lambda.TooManyRequestsException",
]


class ClusterLifecycle(Construct):
    """The LaunchCluster and TeardownCluster state machines of one cluster."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster_name: str,
        table: dynamodb.ITable,
        step_function: lambda_.IFunction,
        scaling_rules: Sequence[events.IRule],
    ) -> None:
        super().__init__(scope, construct_id)
        self._cluster_name = cluster_name
        self._table = table
        self._step_function = step_function
        self._rules = list(scaling_rules)
        self.launch = self._state_machine("LaunchCluster", self._build_launch(), ec2_resources=())
        self.teardown = self._state_machine(
            "TeardownCluster", self._build_teardown(), ec2_resources=("instance", "spot-instances-request")
        )

    # ---- LaunchCluster ---------------------------------------------------------------------------

    def _build_launch(self) -> sfn.IChainable:
        failed = self._record_status("Record the cluster as failed", ClusterStatus.FAILED, cause_path=ERROR_CAUSE).next(
            sfn.Fail(
                self,
                "Launch failed",
                error="LaunchFailed",  # Step Functions refuses to re-raise a States.* name from a Fail state
                comment="The launch was rolled back.",
                cause_path=ERROR_CAUSE,  # the caught error's cause names the failing step's error
            )
        )
        rollback = self._step(
            "Roll back the launched nodes",
            LifecycleAction.ROLLBACK,
            "Terminate every node this launch started and wait until none is left, so a failed launch costs nothing.",
        ).next(failed)

        def guarded(state: sfn.TaskStateBase) -> sfn.TaskStateBase:
            return state.add_catch(rollback, errors=["States.ALL"], result_path=ERROR_PATH)

        nodes_running = guarded(
            self._step(
                "Check whether the static nodes run",
                LifecycleAction.CHECK_STATIC_NODES,
                "Describe the static nodes; fails with StaticNodesNotRunningError after the deadline.",
            )
        )
        agents_healthy = guarded(
            self._step(
                "Check whether the agents report",
                LifecycleAction.CHECK_AGENTS,
                "Read the node records; every static node's agent must have heartbeated since launch.",
            )
        )
        wait_nodes = sfn.Wait(
            self,
            "Wait for static nodes to run",
            time=sfn.WaitTime.seconds_path(result_path(LifecycleAction.VALIDATE, "poll_seconds")),
            comment="EC2 takes a minute or two to start an instance.",
        )
        wait_agents = sfn.Wait(
            self,
            "Wait for the agents to report",
            time=sfn.WaitTime.seconds_path(result_path(LifecycleAction.VALIDATE, "poll_seconds")),
            comment="The appliance starts and the agent heartbeats within a few minutes.",
        )
        enable = self._each_rule("Enable", "enableRule")
        for task in enable[1]:
            guarded(task)
        active = guarded(self._record_status("Record the cluster as active", ClusterStatus.ACTIVE))
        return (
            guarded(
                self._step(
                    "Validate the cluster settings",
                    LifecycleAction.VALIDATE,
                    "Check the deployed settings and compute the static fleet; nothing is launched yet.",
                )
            )
            .next(guarded(self._record_status("Record the cluster as launching", ClusterStatus.LAUNCHING)))
            .next(
                guarded(
                    self._step(
                        "Launch the static nodes",
                        LifecycleAction.LAUNCH_STATIC_NODES,
                        "Launch the static workers with the scaler's capacity fallback across types and markets.",
                    )
                )
            )
            .next(nodes_running)
            .next(
                sfn.Choice(self, "Are the static nodes running?", comment="Loop until every static node runs.")
                .when(
                    sfn.Condition.boolean_equals(result_path(LifecycleAction.CHECK_STATIC_NODES, "done"), True),
                    agents_healthy.next(
                        sfn.Choice(self, "Are the agents healthy?", comment="Loop until every agent reports.")
                        .when(
                            sfn.Condition.boolean_equals(result_path(LifecycleAction.CHECK_AGENTS, "done"), True),
                            enable[0]
                            .next(active)
                            .next(
                                sfn.Succeed(
                                    self,
                                    "The cluster is active",
                                    comment="Static nodes run, agents report, scaling is on.",
                                )
                            ),
                        )
                        .otherwise(wait_agents.next(agents_healthy))
                    ),
                )
                .otherwise(wait_nodes.next(nodes_running))
            )
        )

    # ---- TeardownCluster -------------------------------------------------------------------------

    def _build_teardown(self) -> sfn.IChainable:
        failed = self._record_status(
            "Record the teardown as failed", ClusterStatus.FAILED, cause_path=ERROR_CAUSE
        ).next(
            sfn.Fail(
                self,
                "Teardown failed",
                error="TeardownFailed",
                comment="Something is left; the cause names it.",
                cause_path=ERROR_CAUSE,  # the caught error's cause names the failing step's error
            )
        )

        def guarded(state: sfn.TaskStateBase) -> sfn.TaskStateBase:
            return state.add_catch(failed, errors=["States.ALL"], result_path=ERROR_PATH)

        disable = self._each_rule("Disable", "disableRule")
        for task in disable[1]:
            guarded(task)
        check_jobs = guarded(
            self._step(
                "Check for running jobs",
                LifecycleAction.CHECK_JOBS,
                "Are the drained nodes idle yet, or has the grace period run out?",
            )
        )
        wait_jobs = sfn.Wait(
            self,
            "Wait for running jobs to finish",
            time=sfn.WaitTime.seconds_path(result_path(LifecycleAction.DRAIN_ALL, "job_poll_seconds")),
            comment="Draining nodes take no new work; their running jobs finish.",
        )
        check_terminated = guarded(
            self._step(
                "Check whether everything is terminated",
                LifecycleAction.CHECK_TERMINATED,
                "Describe the cluster's instances by tag; fails after the deadline.",
            )
        )
        wait_terminated = sfn.Wait(
            self,
            "Wait for the instances to terminate",
            time=sfn.WaitTime.seconds_path(result_path(LifecycleAction.DRAIN_ALL, "poll_seconds")),
            comment="Termination takes up to a few minutes.",
        )
        terminate_batch = tasks.CallAwsService(
            self,
            "Terminate the batch",
            comment="One TerminateInstances call for up to 100 instances.",
            service="ec2",
            action="terminateInstances",
            parameters={"InstanceIds.$": "$"},
            iam_resources=[lifecycle_steps.ec2_arn(self, "instance")],
            iam_action="ec2:TerminateInstances",
            result_path=sfn.JsonPath.DISCARD,
        ).add_retry(errors=THROTTLING_ERRORS, interval=Duration.seconds(2), backoff_rate=2, max_attempts=5)
        terminate_each = guarded(
            sfn.Map(
                self,
                "Terminate each batch",
                comment="Batches of instance ids, stopped ones included.",
                items_path=result_path(LifecycleAction.INVENTORY, "batches"),
                max_concurrency=4,
                result_path=sfn.JsonPath.DISCARD,
            ).item_processor(terminate_batch)
        )
        cancel_spot = guarded(
            tasks.CallAwsService(
                self,
                "Cancel the spot requests",
                comment="Open spot requests would launch new instances.",
                service="ec2",
                action="cancelSpotInstanceRequests",
                parameters={"SpotInstanceRequestIds.$": result_path(LifecycleAction.INVENTORY, "spot_requests")},
                iam_resources=[lifecycle_steps.ec2_arn(self, "spot-instances-request")],
                iam_action="ec2:CancelSpotInstanceRequests",
                result_path=sfn.JsonPath.DISCARD,
            ).add_retry(errors=THROTTLING_ERRORS, interval=Duration.seconds(2), backoff_rate=2, max_attempts=5)
        )
        verify = guarded(
            self._step(
                "Verify nothing is left",
                LifecycleAction.VERIFY_EMPTY,
                "The inventory by tag must be empty; fails naming whatever is left.",
            )
        )
        destroyed = guarded(self._record_status("Record the cluster as destroyed", ClusterStatus.DESTROYED)).next(
            sfn.Succeed(self, "The cluster is destroyed", comment="Nothing tagged for the cluster is left.")
        )
        after_termination = check_terminated.next(
            sfn.Choice(self, "Is everything terminated?", comment="Loop until no tagged instance is left running.")
            .when(
                sfn.Condition.boolean_equals(result_path(LifecycleAction.CHECK_TERMINATED, "done"), True),
                verify.next(destroyed),
            )
            .otherwise(wait_terminated.next(check_terminated))
        )
        inventory = guarded(
            self._step(
                "List everything tagged for the cluster",
                LifecycleAction.INVENTORY,
                "Every instance (stopped ones too) and spot request tagged for the cluster, in batches.",
            )
        )
        inventory.next(terminate_each).next(
            sfn.Choice(self, "Are there spot requests?", comment="Cancel them before checking the inventory.")
            .when(
                sfn.Condition.is_present(result_path(LifecycleAction.INVENTORY, "spot_requests[0]")),
                cancel_spot.next(after_termination),
            )
            .otherwise(after_termination)
        )
        return (
            disable[0]
            .next(guarded(self._record_status("Record the cluster as tearing down", ClusterStatus.TEARING_DOWN)))
            .next(
                guarded(
                    self._step(
                        "Drain every node",
                        LifecycleAction.DRAIN_ALL,
                        "Mark every node draining so no new job starts anywhere.",
                    )
                )
            )
            .next(
                sfn.Choice(self, "Is the teardown forced?", comment="Forced: do not wait for running jobs.")
                .when(sfn.Condition.boolean_equals(result_path(LifecycleAction.DRAIN_ALL, "force"), True), inventory)
                .otherwise(
                    check_jobs.next(
                        sfn.Choice(self, "Are the nodes idle?", comment="Idle, or the grace period is over.")
                        .when(
                            sfn.Condition.boolean_equals(result_path(LifecycleAction.CHECK_JOBS, "done"), True),
                            inventory,
                        )
                        .otherwise(wait_jobs.next(check_jobs))
                    )
                )
            )
        )

    # ---- building blocks (cdk/lifecycle_steps.py) --------------------------------------------------

    def _step(self, name: str, action: LifecycleAction, comment: str) -> tasks.LambdaInvoke:
        return lifecycle_steps.lambda_step(self, self._step_function, name, action, comment)

    def _record_status(
        self, name: str, status: ClusterStatus, *, cause_path: str | None = None
    ) -> tasks.DynamoUpdateItem:
        return lifecycle_steps.record_status(self, self._table, name, status, cause_path=cause_path)

    def _each_rule(self, verb: str, action: str) -> tuple[sfn.Chain, list[tasks.CallAwsService]]:
        return lifecycle_steps.each_rule(self, self._rules, verb, action)

    def _state_machine(
        self, name: str, definition: sfn.IChainable, *, ec2_resources: tuple[str, ...]
    ) -> sfn.StateMachine:
        return lifecycle_steps.state_machine(
            self,
            name,
            definition,
            cluster_name=self._cluster_name,
            step_function=self._step_function,
            ec2_resources=ec2_resources,
        )
