"""The embedded AWS: moto as a server on loopback, in this process, with the local cloud's patches.

``LocalCloud.start()`` serves moto on ``http://localhost:PORT`` (a free port; ``localhost``, not
``127.0.0.1``, or moto reads the CloudFormation template URL as a bucket name), turns on executing
Step Functions and Lambda without Docker through moto's config API, and points this process (and the
``cdk`` subprocesses, through ``environ``) at it with fake credentials. ``stop()`` undoes all of it.

moto's backends are not thread-safe (a DynamoDB transaction's table copy races another thread's write),
so requests are served one at a time, as one moto server thread would. Lambda ``Invoke`` requests are the
exception: the handler they run calls back into this server.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from shared.local import moto_patches

ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "shoal-local", "AWS_SECRET_ACCESS_KEY": "shoal-local"}
# Variables that would send the SDK elsewhere or make it look for a profile.
CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")  # fmt: skip
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _OneAtATime:
    """WSGI middleware: one request at a time, except Lambda invocations (their handler calls back in)."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.RLock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.endswith("/invocations") and "/functions/" in path:
            return list(self._app(environ, start_response))
        with self._lock:
            return list(self._app(environ, start_response))


class _Server(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class LocalCloud:
    """moto on loopback for one local run; ``environ`` is what a process needs to use it."""

    def __init__(self, *, region: str, speed: float, hooks: moto_patches.Hooks) -> None:
        self.region = region
        self.speed = speed
        self._hooks = hooks
        self._server: _Server | None = None
        self._saved_environ: dict[str, str | None] = {}
        self._saved_config: dict[str, Any] = {}
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def environ(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "MOTO_PORT": str(self.port),  # moto's Step Functions interpreter calls services on this port
            **FAKE_CREDENTIALS,
        }

    def start(self) -> None:
        moto_patches.activate(self._hooks)
        try:
            server = _Server(ip_address="localhost", port=0, verbose=False)
            server.start()
            self._server = server
            self.port = server.get_host_and_port()[1]
            self._set_environ(self.environ)
            current = json.loads(self._request("GET", "/moto-api/config", None))
            self._saved_config = {service: current.get(service, {}) for service in MOTO_CONFIG}
            self._request("POST", "/moto-api/config", MOTO_CONFIG)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._request("POST", "/moto-api/reset", None)  # free the backends' memory for whoever runs next
                if self._saved_config:  # moto's config is process-wide: give the next user the one it had
                    self._request("POST", "/moto-api/config", self._saved_config)
            except OSError:
                pass
            self._server.stop()
            self._server = None
        self._restore_environ()
        moto_patches.deactivate()

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> bytes:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback: our own server
            body_bytes: bytes = response.read()
            return body_bytes

    def _set_environ(self, values: Mapping[str, str]) -> None:
        # Per-service endpoints (AWS_ENDPOINT_URL_SQS, ...) would win over ours.
        cleared = (*CLEARED, *(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")))
        for name in (*values, *cleared):
            self._saved_environ.setdefault(name, os.environ.get(name))
        for name in cleared:
            os.environ.pop(name, None)
        os.environ.update(values)

    def _restore_environ(self) -> None:
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ.clear()
