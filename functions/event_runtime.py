"""What the two EventBridge-driven functions share: what they keep while warm, and how an event gets in.

Each handler module has the Powertools shape: a module-level ``record_handler`` for the SQS route (the
durable one; ``process_partial_response`` fails a malformed record alone) and a ``lambda_handler`` for
an event EventBridge delivers directly. Both parse at the edge (``functions.event_models``) and call
the function's work through ``Runtime.once``: each event id is handled at most once (Powertools
idempotency), and the work calls one service. Handler → work → service: two hops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.event_models import MalformedEventError, event_from_body
from functions.observability import logger, metrics
from shared.domain.node_types import Offer
from shared.domain.scaling import offers_for
from shared.services.environment import FunctionEnvironment
from shared.services.reconcile import ControlPlane
from shared.wiring.control_plane import build_control_plane, idempotency_store
from shared.wiring.settings import read_function_environment

E = TypeVar("E", bound=EventBridgeModel)
Result = dict[str, object]


@dataclass(frozen=True, slots=True)
class Runtime:
    """Built on a function's first event (not at import, so tests set the environment first), kept while warm."""

    env: FunctionEnvironment
    offers: list[Offer]
    plane: ControlPlane
    idempotency: IdempotencyConfig
    work: Callable[..., Result]  # the function's work, wrapped to run at most once per event id

    @classmethod
    def warm_up(cls, function: str, work: Callable[..., Result]) -> Runtime:
        """``work`` takes the parsed event as ``event=`` (the idempotency key is its ``id``)."""
        env = read_function_environment()
        config = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)
        once = idempotent_function(
            data_keyword_argument="event", persistence_store=idempotency_store(env, function), config=config
        )(work)
        return cls(
            env=env, offers=offers_for(env.cluster), plane=build_control_plane(env), idempotency=config, work=once
        )

    def start(self, context: LambdaContext) -> None:
        """Per invocation: idempotency records expire with the invocation; metrics carry the cluster."""
        self.idempotency.register_lambda_context(context)
        metrics.set_default_dimensions(cluster=self.env.cluster.name)

    def once(self, event: EventBridgeModel) -> Result:
        """The work for ``event``; a repeated event id gets the first answer, one still running says so."""
        logger.append_keys(event_id=event.id, detail_type=event.detail_type)
        try:
            return self.work(event=event)
        except IdempotencyAlreadyInProgressError:
            logger.info("this event is already being handled")
            return {"status": "in progress", "event_id": event.id}


def is_sqs_batch(event: object) -> bool:
    return isinstance(event, dict) and "Records" in event


def from_record(record: SQSRecord, parse: Callable[[object], E]) -> E:
    """The event an SQS message carries; a malformed one is logged and raised (that record fails alone)."""
    try:
        return parse(event_from_body(record.body))
    except MalformedEventError as error:
        logger.error("message rejected", message_id=record.message_id, reason=str(error))
        raise


def rejected(error: MalformedEventError) -> Result:
    """The answer to a malformed event delivered directly (EventBridge does not retry it)."""
    logger.error("event rejected", reason=str(error))
    return {"status": "rejected", "reason": str(error)}
