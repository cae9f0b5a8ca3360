"""A strict local fake of the Databricks serving-endpoints REST API (a real HTTP server).

What the Databricks SDK's ``WorkspaceClient.serving_endpoints`` sends, checked as the
real API would check it (``/api/2.0/serving-endpoints``):

* ``POST /api/2.0/serving-endpoints``: ``name`` (letters, digits, ``-``, ``_``, at most
  63) and ``config.served_entities``, each with ``entity_name`` (a three-level Unity
  Catalog name), ``entity_version``, ``workload_size`` (Small/Medium/Large) and
  ``scale_to_zero_enabled``; unknown fields are refused (400), an existing name too.
* ``GET /api/2.0/serving-endpoints/{name}``: ``state.ready`` NOT_READY -> READY and
  ``state.config_update`` IN_PROGRESS -> NOT_UPDATING after ``polls_to_ready`` gets;
  ``pending_config`` while updating.
* ``PUT /api/2.0/serving-endpoints/{name}/config``: a new config (409 while one is in
  progress); ``fail_next_update()`` makes it end UPDATE_FAILED.
* ``POST /serving-endpoints/{name}/invocations``: exactly one of ``dataframe_split``
  (``columns``, ``data``) or ``inputs``; 503 unless READY; answers
  ``{"predictions": [...]}`` from ``predict(texts)``.
* ``DELETE /api/2.0/serving-endpoints/{name}``.

Every request needs ``Authorization: Bearer <token>``. ``fail_next(method, pattern,
status)`` answers one matching request with ``status`` (429 with ``Retry-After: 0``),
optionally after doing what it asked (``took_effect=True``). ``endpoints`` holds what
exists, ``created`` counts creations: tests check nothing is left behind.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

TOKEN = "dapi-fake-token-never-logged"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
ENTITY_FIELDS = {
    "entity_name",
    "entity_version",
    "workload_size",
    "workload_type",
    "scale_to_zero_enabled",
    "name",
    "environment_vars",
}
WORKLOAD_SIZES = {"Small", "Medium", "Large"}


@dataclass
class Endpoint:
    name: str
    config: dict[str, Any]
    ready: str = "NOT_READY"
    config_update: str = "IN_PROGRESS"
    pending: dict[str, Any] | None = None
    polls_left: int = 0
    fail_update: bool = False


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    took_effect: bool


@dataclass
class FakeServing:
    predict: Callable[[list[str]], pd.DataFrame]
    polls_to_ready: int = 2
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    created: int = 0
    deleted: int = 0
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _fail_update: bool = False

    def __enter__(self) -> FakeServing:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """Unified authentication's variables for this workspace."""
        return {"DATABRICKS_HOST": self.url, "DATABRICKS_TOKEN": TOKEN}

    def fail_next(
        self, method: str, pattern: str, status: int, *, took_effect: bool = False
    ) -> None:
        self._failures.append(Failure(method, re.compile(pattern), status, took_effect))

    def fail_next_update(self) -> None:
        """The next config (created or updated) ends UPDATE_FAILED."""
        self._fail_update = True

    def calls(self, method: str, pattern: str) -> list[dict[str, Any]]:
        return [
            body
            for m, path, body in self.requests
            if m == method and re.fullmatch(pattern, path)
        ]

    # --- the API -------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: PLR0911
        with self._lock:
            self.requests.append((method, path, body))
            for failure in list(self._failures):
                if failure.method == method and failure.pattern.fullmatch(path):
                    self._failures.remove(failure)
                    if failure.took_effect:
                        self._route(method, path, body)
                    return failure.status, _error(failure.status, "injected failure")
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: PLR0911
        if path == "/api/2.0/serving-endpoints" and method == "POST":
            return self._create(body)
        match = re.fullmatch(r"/api/2\.0/serving-endpoints/([^/]+)(/config)?", path)
        if match:
            name, config = match.groups()
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                return 404, _error(404, f"Endpoint {name} does not exist.")
            if method == "GET" and not config:
                return 200, self._describe(endpoint)
            if method == "PUT" and config:
                return self._update(endpoint, body)
            if method == "DELETE" and not config:
                del self.endpoints[name]
                self.deleted += 1
                return 200, {}
        match = re.fullmatch(r"/serving-endpoints/([^/]+)/invocations", path)
        if match and method == "POST":
            return self._invoke(match.group(1), body)
        return 404, _error(404, f"No API found for {method} {path}")

    def _check_config(self, config: Any) -> str | None:
        if not isinstance(config, dict) or set(config) - {"served_entities", "name"}:
            return f"config must hold served_entities only, got {config!r}"
        return self._check_entities(config.get("served_entities"))

    def _check_entities(self, entities: Any) -> str | None:  # noqa: PLR0911
        if not isinstance(entities, list) or not entities:
            return "served_entities must be a non-empty list"
        for entity in entities:
            unknown = set(entity) - ENTITY_FIELDS
            if unknown:
                return f"Unknown fields in served entity: {sorted(unknown)}"
            name = entity.get("entity_name", "")
            if len(name.split(".")) != 3:
                return f"entity_name must be <catalog>.<schema>.<model>: {name!r}"
            if not str(entity.get("entity_version", "")).isdigit():
                return f"entity_version is required: {entity!r}"
            if entity.get("workload_size") not in WORKLOAD_SIZES:
                return f"workload_size must be one of {sorted(WORKLOAD_SIZES)}"
            if not isinstance(entity.get("scale_to_zero_enabled"), bool):
                return "scale_to_zero_enabled is required"
        return None

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        unknown = set(body) - {"name", "config", "tags"}
        if unknown:
            return 400, _error(400, f"Unknown fields: {sorted(unknown)}")
        name = body.get("name", "")
        if not NAME.fullmatch(name):
            return 400, _error(400, f"Invalid endpoint name {name!r}")
        if name in self.endpoints:
            return 400, _error(
                400,
                f"Endpoint with name '{name}' already exists.",
                "RESOURCE_ALREADY_EXISTS",
            )
        problem = self._check_config(body.get("config"))
        if problem:
            return 400, _error(400, problem)
        endpoint = Endpoint(
            name,
            config={},
            pending=body["config"],
            polls_left=self.polls_to_ready,
            fail_update=self._fail_update,
        )
        self._fail_update = False
        self.endpoints[name] = endpoint
        self.created += 1
        return 200, self._describe(endpoint, advance=False)

    def _update(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
        if endpoint.config_update == "IN_PROGRESS":
            return 409, _error(409, "An update is in progress.", "RESOURCE_CONFLICT")
        unknown = set(body) - {"served_entities", "traffic_config"}
        if unknown:
            return 400, _error(400, f"Unknown fields: {sorted(unknown)}")
        problem = self._check_entities(body.get("served_entities"))
        if problem:
            return 400, _error(400, problem)
        endpoint.pending = {"served_entities": body["served_entities"]}
        endpoint.config_update = "IN_PROGRESS"
        endpoint.polls_left = self.polls_to_ready
        endpoint.fail_update = self._fail_update
        self._fail_update = False
        return 200, self._describe(endpoint, advance=False)

    def _describe(self, endpoint: Endpoint, *, advance: bool = True) -> dict[str, Any]:
        if advance and endpoint.pending is not None:
            if endpoint.polls_left > 0:
                endpoint.polls_left -= 1
            elif endpoint.fail_update:
                endpoint.pending = None
                endpoint.config_update = "UPDATE_FAILED"
            else:
                endpoint.config = endpoint.pending
                endpoint.pending = None
                endpoint.ready = "READY"
                endpoint.config_update = "NOT_UPDATING"
        answer: dict[str, Any] = {
            "name": endpoint.name,
            "id": f"ep-{endpoint.name}",
            "state": {"ready": endpoint.ready, "config_update": endpoint.config_update},
            "config": endpoint.config,
        }
        if endpoint.pending is not None:
            answer["pending_config"] = endpoint.pending
        return answer

    def _invoke(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return 404, _error(404, f"Endpoint {name} does not exist.")
        if endpoint.ready != "READY":
            return 503, _error(503, f"Endpoint {name} is not ready.")
        formats = [
            k
            for k in ("dataframe_split", "dataframe_records", "inputs", "instances")
            if k in body
        ]
        if len(formats) != 1 or set(body) - set(formats):
            return 400, _error(
                400, f"Send exactly one input format, got {sorted(body)}"
            )
        if formats == ["dataframe_split"]:
            split = body["dataframe_split"]
            if split.get("columns") != ["text"] or not isinstance(
                split.get("data"), list
            ):
                return 400, _error(
                    400, f"dataframe_split needs columns ['text'] and data: {split}"
                )
            texts = [row[0] for row in split["data"]]
        elif formats == ["inputs"] and isinstance(body["inputs"], list):
            texts = body["inputs"]
        else:
            return 400, _error(400, f"Unsupported input {formats}")
        frame = self.predict(texts)
        return 200, {"predictions": json.loads(frame.to_json(orient="records"))}


def _error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    codes = {
        400: "INVALID_PARAMETER_VALUE",
        404: "RESOURCE_DOES_NOT_EXIST",
        409: "RESOURCE_CONFLICT",
        429: "REQUEST_LIMIT_EXCEEDED",
        500: "INTERNAL_ERROR",
        503: "TEMPORARILY_UNAVAILABLE",
    }
    return {
        "error_code": code or codes.get(status, "INTERNAL_ERROR"),
        "message": message,
    }


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeServing

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/.well-known/"):  # host metadata: none here
            status, answer = 404, _error(404, "Not found")
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, answer = 401, _error(401, "Credential was not sent or was invalid.")
            answer["error_code"] = "UNAUTHENTICATED"
        else:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                status, answer = 400, _error(400, "Malformed JSON")
            else:
                status, answer = self.server_fake.handle(
                    method, self.path.split("?")[0], body
                )
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
