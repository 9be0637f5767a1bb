"""A fake EC2 instance metadata service (IMDSv2 only) on 127.0.0.1, in a thread.

It insists on a session token like the real one, serves the instance id and region, and answers
``spot/instance-action`` with 404 until ``announce()`` is called.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "fake-imds-token"


class FakeImds:
    def __init__(
        self,
        instance_id: str = "i-0fake",
        region: str = "us-east-1",
        instance_type: str = "m5.24xlarge",
        lifecycle: str = "normal",
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self.paths = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/instance-type": instance_type,
            "/latest/meta-data/instance-life-cycle": lifecycle,
        }
        self.notice: dict[str, str] | None = None
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-imds", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def announce(self, action: str = "terminate", time: str = "2026-01-01T00:02:00Z") -> None:
        self.notice = {"action": action, "time": time}

    def start(self) -> FakeImds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(imds: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            imds.requests.append(("PUT", self.path))
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._reply(400, "bad token request")
                return
            self._reply(200, TOKEN)

        def do_GET(self) -> None:
            imds.requests.append(("GET", self.path))
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._reply(401, "IMDSv2 token required")
                return
            if self.path in imds.paths:
                self._reply(200, imds.paths[self.path])
            elif self.path == "/latest/meta-data/spot/instance-action" and imds.notice is not None:
                self._reply(200, json.dumps(imds.notice))
            else:
                self._reply(404, "Not Found")

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
