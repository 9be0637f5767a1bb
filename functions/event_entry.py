"""What the two EventBridge-driven handlers share: one event, or an SQS batch of them (the durable route),
parsed by the handler's own parser, with each event id handled at most once (Powertools idempotency).

Not a handler itself: ``evaluate_scaling`` and ``on_instance_event`` build their ``Warm`` state with
``warm_up`` and pass each invocation through ``entry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.adapters.control_plane import build_control_plane, idempotency_store
from shared.domain.node_types import Offer
from shared.domain.scaling import offers_for
from shared.services.environment import FunctionEnvironment
from shared.services.event_models import MalformedEventError, event_from_body
from shared.services.reconcile import ControlPlane

E = TypeVar("E")
Result = dict[str, object]


@dataclass(frozen=True, slots=True)
class Warm:
    """Built on a function's first event (not at import, so tests set the environment first), kept while warm."""

    env: FunctionEnvironment
    offers: list[Offer]
    plane: ControlPlane
    idempotency: IdempotencyConfig
    once: Callable[..., Result]  # the handler's work, called with ``event=``, at most once per event id


def warm_up(function: str, work: Callable[..., Result]) -> Warm:
    env = FunctionEnvironment.from_env()
    config = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)
    once = idempotent_function(
        data_keyword_argument="event", persistence_store=idempotency_store(env, function), config=config
    )(work)
    return Warm(env=env, offers=offers_for(env.cluster), plane=build_control_plane(env), idempotency=config, once=once)


def entry(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    warm: Warm,
    parse: Callable[[Any], E],
    run: Callable[[E], Result],
    logger: Logger,
    metrics: Metrics,
    processor: BatchProcessor,
) -> dict[str, Any]:
    """Parse and run one event; for an SQS batch, each record, reporting the malformed ones as failures."""
    warm.idempotency.register_lambda_context(context)
    metrics.set_default_dimensions(cluster=warm.env.cluster.name)
    if isinstance(event, dict) and "Records" in event:

        def one(record: SQSRecord) -> Result:  # Powertools passes it as ``record=``
            try:
                parsed = parse(event_from_body(record.body))
            except MalformedEventError as error:
                logger.error("message rejected", message_id=record.message_id, reason=str(error))
                raise
            return run(parsed)

        return dict(process_partial_response(event=event, record_handler=one, processor=processor, context=context))
    try:
        parsed = parse(event)
    except MalformedEventError as error:
        logger.error("event rejected", reason=str(error))
        return {"status": "rejected", "reason": str(error)}
    return run(parsed)
