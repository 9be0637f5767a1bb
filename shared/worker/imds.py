"""The instance metadata service, IMDSv2 only: the spot interruption notice, the instance id and region.

IMDSv2 wants a session token (``PUT /latest/api/token``) on every read. From inside a container the
token's response crosses one extra network hop, so the launch template sets the PUT response hop
limit to 2 (or the appliance runs with host networking, as Toil's does).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL = "http://169.254.169.254"
IMDS_URL_VARIABLE = "SHOAL_IMDS_URL"
TOKEN_TTL_SECONDS = 21600
_NOT_FOUND = 404
_UNAUTHORIZED = 401


class ImdsError(RuntimeError):
    """The metadata service could not be reached or refused us; not running on EC2, or the hop limit is 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotNotice:
    action: str  # "terminate", "stop" or "hibernate"
    time: str  # when, as EC2 writes it (ISO 8601, UTC)


class ImdsClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 1.0,
        environ: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self.base_url = (base_url or env.get(IMDS_URL_VARIABLE) or DEFAULT_IMDS_URL).rstrip("/")
        self._timeout = timeout
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_expires = 0.0

    def spot_notice(self) -> SpotNotice | None:
        """The pending spot interruption, or None (404: no notice). Raises ``ImdsError`` if IMDS is unreachable."""
        body = self._get("/latest/meta-data/spot/instance-action")
        if body is None:
            return None
        try:
            data = json.loads(body)
            return SpotNotice(action=str(data["action"]), time=str(data["time"]))
        except (ValueError, KeyError, TypeError):
            # A notice we cannot read is still a notice: better to leave early than to lose jobs.
            return SpotNotice(action="unknown", time="")

    def instance_id(self) -> str:
        return self._need("/latest/meta-data/instance-id")

    def region(self) -> str:
        return self._need("/latest/meta-data/placement/region")

    def instance_type(self) -> str:
        return self._need("/latest/meta-data/instance-type")

    def lifecycle(self) -> str:
        """ "spot" or "on-demand" (EC2 writes "normal" for some on-demand launches)."""
        value = self._need("/latest/meta-data/instance-life-cycle")
        return "on-demand" if value == "normal" else value

    def _need(self, path: str) -> str:
        body = self._get(path)
        if body is None:
            raise ImdsError(f"{self.base_url}{path} is not found")
        return body

    def _get(self, path: str) -> str | None:
        for attempt in range(2):
            request = urllib.request.Request(
                f"{self.base_url}{path}", headers={"X-aws-ec2-metadata-token": self._session_token()}
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    return str(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                if error.code == _NOT_FOUND:
                    return None
                if error.code == _UNAUTHORIZED and attempt == 0:
                    self._token = None  # expired or revoked: fetch a new one once
                    continue
                raise ImdsError(f"GET {self.base_url}{path} failed: HTTP {error.code}") from None
            except (urllib.error.URLError, OSError) as error:
                raise ImdsError(f"cannot reach the instance metadata service at {self.base_url}: {error}") from None
        raise ImdsError(f"GET {self.base_url}{path} was refused twice")

    def _session_token(self) -> str:
        now = self._monotonic()
        if self._token is None or now >= self._token_expires:
            request = urllib.request.Request(
                f"{self.base_url}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    self._token = str(response.read().decode("utf-8"))
            except (urllib.error.URLError, OSError) as error:
                raise ImdsError(
                    f"cannot get an IMDSv2 token from {self.base_url}: {error}; on EC2, set the launch template's "
                    "metadata hop limit to 2 so a container can reach IMDS"
                ) from None
            # Renew well before the service expires it.
            self._token_expires = now + TOKEN_TTL_SECONDS / 2
        return self._token


class SpotInterruptionWatch:
    """The agent's interruption check: a reason when EC2 has announced this spot instance's end, else None.

    An unreachable IMDS is logged once (not on EC2, or the hop limit keeps the container out) and then
    treated as "no notice": the SIGTERM that precedes shutdown still triggers the evacuation.
    """

    def __init__(self, client: ImdsClient) -> None:
        self._client = client
        self._warned = False

    def __call__(self) -> str | None:
        try:
            notice = self._client.spot_notice()
        except ImdsError as error:
            if not self._warned:
                log.warning("cannot watch for spot interruptions: %s", error)
                self._warned = True
            return None
        if notice is None:
            return None
        return f"spot interruption notice: {notice.action} at {notice.time or 'an unknown time'}"
