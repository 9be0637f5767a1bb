"""Running the deployed Lambda functions' real handlers in this process.

A function is found by name or ARN; its handler (``functions.evaluate_scaling.lambda_handler``) and
environment come from the deployed function configuration (``GetFunctionConfiguration``), nothing is
re-declared. Each invocation runs with that environment in ``os.environ``, one at a time (the handlers'
modules are process-wide, as in one warm Lambda sandbox per function), with the handler module's
``clock`` seam pointed at the local cloud's accelerated clock. What the function prints (Powertools
logs and EMF metrics) goes to a log file, the local stand-in for CloudWatch Logs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TextIO

import boto3

from shared.local.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionConfig:
    name: str
    arn: str
    handler: str  # module.path.function
    environment: dict[str, str]
    timeout: int
    memory: int


@dataclass(slots=True)
class _Context:
    """The part of the Lambda context object the handlers use."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout: int
    aws_request_id: str
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    function: str
    trigger: str
    ok: bool
    result: object
    error: str | None = None  # "function: ErrorType: message"
    error_type: str | None = None
    error_message: str | None = None


class LocalLambdas:
    """Invokes deployed functions' handlers in-process; ``invocations`` counts them by function name."""

    def __init__(self, *, clock: Clock, region: str, log_stream: TextIO) -> None:
        self.clock = clock
        self.region = region
        self.log_stream = log_stream
        self.invocations: dict[str, int] = {}
        self.errors: list[str] = []
        self._configs: dict[str, FunctionConfig] = {}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.RLock()
        self._client: Any = None
        self._restore: list[Callable[[], None]] = []

    def config(self, function: str) -> FunctionConfig:
        with self._lock:
            cached = self._configs.get(function)
            if cached is not None:
                return cached
            if self._client is None:
                self._client = boto3.client("lambda", region_name=self.region)
            raw = self._client.get_function_configuration(FunctionName=function)
            config = FunctionConfig(
                name=raw["FunctionName"],
                arn=raw["FunctionArn"],
                handler=raw["Handler"],
                environment=dict(raw.get("Environment", {}).get("Variables", {})),
                timeout=int(raw.get("Timeout", 3)),
                memory=int(raw.get("MemorySize", 128)),
            )
            self._configs[function] = self._configs[config.name] = self._configs[config.arn] = config
            return config

    def invoke(self, function: str, event: object, *, trigger: str = "") -> Invocation:
        """Run the handler; an exception is returned as a failed invocation, as Lambda reports it."""
        config = self.config(function)
        with self._lock, self._environment(config.environment), self._output():
            self.invocations[config.name] = self.invocations.get(config.name, 0) + 1
            handler = self._handler(config)
            context = _Context(
                function_name=config.name,
                invoked_function_arn=config.arn,
                memory_limit_in_mb=config.memory,
                timeout=config.timeout,
                aws_request_id=str(uuid.uuid4()),
                log_group_name=f"/aws/lambda/{config.name}",
            )
            try:
                result = handler(event, context)
            except Exception as error:
                detail = "".join(traceback.format_exception(error))
                print(f"[{config.name}] invocation failed:\n{detail}", file=self.log_stream, flush=True)
                message = f"{config.name}: {type(error).__name__}: {error}"
                self.errors.append(message)
                return Invocation(function=config.name, trigger=trigger, ok=False, result=None, error=message,
                                  error_type=type(error).__name__, error_message=str(error))  # fmt: skip
        return Invocation(function=config.name, trigger=trigger, ok=True, result=result)

    def invoke_payload(self, function: str, payload: bytes) -> tuple[bytes, str | None]:
        """The Lambda ``Invoke`` API (Step Functions' ``lambda:invoke``): JSON in, JSON out, or an error."""
        try:
            event = json.loads(payload or b"{}")
        except json.JSONDecodeError as error:
            body = {"errorMessage": f"payload is not JSON: {error}", "errorType": "InvalidRequestContentException"}
            return json.dumps(body).encode("utf-8"), "Unhandled"
        outcome = self.invoke(function, event, trigger="Invoke")
        if outcome.ok:
            return json.dumps(outcome.result, default=str).encode("utf-8"), None
        body = {"errorMessage": outcome.error_message or "", "errorType": outcome.error_type or "Error"}
        return json.dumps(body).encode("utf-8"), "Unhandled"

    def _handler(self, config: FunctionConfig) -> Callable[[object, _Context], object]:
        module_name, _, attribute = config.handler.rpartition(".")
        module = self._modules.get(module_name)
        if module is None:
            module = importlib.import_module(module_name)
            _cold_start(module)  # the module may be warm from another user in this process (tests)
            original_clock = getattr(module, "clock", None)
            if callable(original_clock):
                # The handlers read "now" through this seam (tests set it too): the accelerated clock.
                module.clock = self.clock.now  # type: ignore[attr-defined]
                self._restore.append(lambda: setattr(module, "clock", original_clock))
            self._redirect_loggers(module)
            self._modules[module_name] = module
        handler: Callable[[object, _Context], object] = getattr(module, attribute)
        return handler

    def close(self) -> None:
        """Give the handler modules back as they were: their clock, their log stream, cold."""
        with self._lock:
            while self._restore:
                self._restore.pop()()
            for module in self._modules.values():
                _cold_start(module)
            self._modules.clear()

    def _redirect_loggers(self, module: ModuleType) -> None:
        for value in vars(module).values():
            handler = getattr(value, "registered_handler", None)  # a Powertools Logger
            if isinstance(handler, logging.StreamHandler):
                original = _swap_stream(handler, self.log_stream)
                if original is not None and original is not self.log_stream:
                    self._restore.append(functools.partial(_swap_stream, handler, original))

    @contextlib.contextmanager
    def _environment(self, variables: dict[str, str]) -> Iterator[None]:
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @contextlib.contextmanager
    def _output(self) -> Iterator[None]:
        with contextlib.redirect_stdout(self.log_stream):
            yield


def _swap_stream(handler: logging.StreamHandler[Any], stream: Any) -> Any:
    """``handler.setStream`` without its flush of the old stream, which may be closed: e.g. the stderr that
    pytest captured for an earlier test, which a second local run in the same process would find there."""
    with handler.lock or contextlib.nullcontext():
        original, handler.stream = handler.stream, stream
    return original


def _cold_start(module: ModuleType) -> None:
    """Drop what the module keeps while warm: its own cached functions (``runtime()``, ``_dependencies()``)."""
    for value in vars(module).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear) and getattr(value, "__module__", None) == module.__name__:
            clear()
