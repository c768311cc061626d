"""Telling Airflow that answers were recorded, so that `nps_responses` runs within seconds.

The survey form calls `AnswerEvents.recorded` after it stores an answer; that only notes the
answer and returns. A background thread posts one event of the `nps_survey_answers` asset to
Airflow's REST API (`POST /api/v2/assets/events`) for everything noted since its last post, at most
one every `NPS_ANSWER_EVENT_SECONDS` (default 5): a burst of 10,000 answers makes a few events, and
Airflow makes one `nps_responses` run of the events that arrive while a run is going. The event's
`extra` holds the number of answers per wave, never who answered.

The service account is the Airflow connection `nps_airflow_api` as the environment gives it
(`AIRFLOW_CONN_NPS_AIRFLOW_API`, JSON or URI): host (the API server's URL), login and password of a
user allowed to post asset events (the simple auth manager's `op` role or more). It logs in at
`/auth/token` and logs in again when the token is refused. When the connection is not set, nothing
is posted. When Airflow is down, slow or refuses, the post fails after a short timeout in the
thread, the answers are kept for the next attempt (`retry_seconds` later), and `nps_responses`'
own timer picks them up meanwhile: a submit never waits for Airflow nor fails because of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from include.nps.core import assets
from include.nps.core.connections import env_connection

log = logging.getLogger(__name__)

CONN_ID = "nps_airflow_api"
TIMEOUT = (3.0, 15.0)  # seconds to connect, to read an answer (in the background thread)


class PostFailed(Exception):
    """Airflow did not take the event (unreachable, refused, or answering an error)."""


@dataclass(frozen=True)
class ApiSettings:
    """Where the API server is and the service account that posts the events."""

    base_url: str
    username: str
    password: str

    @classmethod
    def from_env(cls) -> ApiSettings | None:
        conn = env_connection(CONN_ID)
        if not conn or not conn.get("host"):
            return None
        host = str(conn["host"]).rstrip("/")
        if "://" not in host:
            scheme = conn.get("conn_type") if conn.get("conn_type") in ("http", "https") else "http"
            host = f"{scheme}://{host}" + (f":{conn['port']}" if conn.get("port") else "")
        return cls(host, conn.get("login") or "", conn.get("password") or "")


class AirflowApi:
    """The few calls of Airflow's REST API an event needs: a token, the asset's id, the event."""

    def __init__(self, settings: ApiSettings, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.settings, self.timeout = settings, timeout
        self._session = requests.Session()
        self._token: str | None = None
        self._asset_ids: dict[str, int] = {}

    def post_event(self, uri: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Create an event of the asset `uri`; its JSON as Airflow answers it."""
        body = {"asset_id": self._asset_id(uri), "extra": extra}
        return self._call("POST", "/api/v2/assets/events", json=body).json()

    def _asset_id(self, uri: str) -> int:
        if uri not in self._asset_ids:
            found = self._call("GET", "/api/v2/assets", params={"uri_pattern": uri, "limit": 100}).json()
            ids = [a["id"] for a in found.get("assets", []) if a.get("uri") == uri]
            if not ids:
                raise PostFailed(f"Airflow knows no asset {uri} (is nps_responses deployed and parsed?)")
            self._asset_ids[uri] = ids[0]
        return self._asset_ids[uri]

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for fresh_token in (False, True):
            if fresh_token or self._token is None:
                self._token = self._login()
            response = self._request(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
            if response.status_code != 401:
                break
        if not response.ok:
            raise PostFailed(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response

    def _login(self) -> str:
        body = {"username": self.settings.username, "password": self.settings.password}
        response = self._request("POST", "/auth/token", json=body)
        if not response.ok:
            raise PostFailed(f"login as {self.settings.username!r}: HTTP {response.status_code}")
        return str(response.json()["access_token"])

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, self.settings.base_url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PostFailed(f"{method} {path}: {exc}") from exc


@dataclass
class Coalescer:
    """Answers noted since the last event, and when the next event may go: at once after a quiet
    spell, then at most one per `every` seconds; `retry` seconds after a failed post."""

    every: float
    retry: float
    answers: Counter[str] = field(default_factory=Counter)  # per wave
    not_before: float = float("-inf")

    def add(self, wave_id: str, count: int = 1) -> None:
        self.answers[wave_id] += count

    def wait(self, now: float) -> float | None:
        """Seconds until the next event is due; None when nothing waits."""
        return max(0.0, self.not_before - now) if self.answers else None

    def take(self, now: float) -> dict[str, Any] | None:
        """The next event's `extra` when one is due (and start the quiet spell), else None."""
        if not self.answers or now < self.not_before:
            return None
        waves = dict(self.answers.most_common(assets.MAX_EXTRA_ITEMS))
        extra = {"answers": sum(self.answers.values()), "waves": waves}
        self.answers.clear()
        self.not_before = now + self.every
        return extra

    def put_back(self, extra: dict[str, Any], now: float) -> None:
        """A batch that could not be posted: kept for the next attempt, `retry` seconds from now."""
        self.answers.update(extra["waves"])
        self.not_before = now + self.retry


class AnswerEvents:
    """Posts the answers asset's events from a background thread (see the module's docstring)."""

    def __init__(
        self,
        post: Callable[[dict[str, Any]], Any] | None,
        every: float = 5.0,
        retry: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._pending = Coalescer(every, retry)
        self._clock = clock
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.posted = 0  # events Airflow took
        self.failures = 0  # posts that failed (Airflow down, refusing, slow)

    @classmethod
    def from_env(cls) -> AnswerEvents:
        """From `AIRFLOW_CONN_NPS_AIRFLOW_API` and `NPS_ANSWER_EVENT_SECONDS`; posting nothing when
        the connection is not set."""
        settings = ApiSettings.from_env()
        every = float(os.environ.get("NPS_ANSWER_EVENT_SECONDS", "5"))
        if settings is None:
            return cls(None, every)
        api = AirflowApi(settings)
        return cls(lambda extra: api.post_event(assets.ANSWERS.uri, extra), every)

    @property
    def enabled(self) -> bool:
        return self._post is not None

    def recorded(self, wave_id: str) -> None:
        """Note an answer recorded in `wave_id`; returns at once."""
        if self._post is None:
            return
        with self._wake:
            self._pending.add(wave_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nps-answer-events", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (what is still pending is left to nps_responses' timer)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        post = self._post
        if post is None:
            return
        while (extra := self._next()) is not None:
            try:
                post(extra)
                self.posted += 1
            except Exception as exc:  # whatever goes wrong, the answer is safe in the NPS DB
                self.failures += 1
                log.warning("answers event not posted to Airflow (nps_responses' timer will pick them up): %s", exc)
                with self._wake:
                    self._pending.put_back(extra, self._clock())

    def _next(self) -> dict[str, Any] | None:
        """The next batch, once it is due; None when stopping."""
        with self._wake:
            while not self._stopping:
                wait = self._pending.wait(self._clock())
                if wait == 0:
                    return self._pending.take(self._clock())
                self._wake.wait(wait)
            return None
