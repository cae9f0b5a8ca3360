"""A fake Azure: a real HTTPS server on 127.0.0.1 serving the documented endpoints the
deployment pipeline uses, with failures on demand.

It serves TLS with a throwaway certificate authority (trustme): azure-core sends bearer
tokens only over HTTPS. :meth:`FakeAzure.trusting_environment` gives the variables that
make the SDKs trust it (``SSL_CERT_FILE`` for the openai SDK's httpx2,
``REQUESTS_CA_BUNDLE`` for azure-core's requests transport).

Azure OpenAI data plane (every path needs ``?api-version=`` and the ``api-key`` header):
``POST /openai/files`` (multipart), ``GET /openai/files`` (``purpose``), ``GET
/openai/files/{id}``, ``GET /openai/files/{id}/content``, ``DELETE /openai/files/{id}``,
``POST /openai/fine_tuning/jobs``, ``GET /openai/fine_tuning/jobs`` (newest first,
``limit`` and ``after``), ``GET /openai/fine_tuning/jobs/{id}``, ``GET
/openai/fine_tuning/jobs/{id}/events``, ``POST
/openai/deployments/{deployment}/chat/completions``.

Azure Resource Manager (``Authorization: Bearer``, ``?api-version=``): ``PUT/GET/DELETE
/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.CognitiveServices/accounts/{a}
/deployments/{name}`` and the ``Azure-AsyncOperation`` URL a PUT answers with (each
read of either advances the deployment; ``Succeeded`` after
``deployment_polls_until_done`` reads).

Scenarios: ``job_outcome`` (``succeeded``, ``failed``, ``cancelled``, ``never``),
``deployment_outcome`` (``Succeeded``, ``Failed``), ``answer`` (the model's answer to a
review; ``answers_by_deployment`` for some deployments, such as one added by
:meth:`FakeAzure.add_existing_deployment`), :meth:`FakeAzure.fail_next` for 429 (with ``Retry-After``) or 5xx answers
before the real one, and :meth:`FakeAzure.lose_answer` for a request that takes effect
but is answered with a 5xx (or too late: a client timeout). ``job_outcome = "never"``
keeps jobs running until a test sets another outcome. ``uploads`` and ``jobs_created``
count what POSTs created (an answer lost or not).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

RESULTS_CSV = "step,train_loss,train_mean_token_accuracy\n1,0.9,0.5\n2,0.4,0.8\n"
DEPLOYMENT_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.CognitiveServices/accounts/(?P<account>[^/]+)/deployments/(?P<name>[^/]+)$"
)
OPERATION_PATH = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.CognitiveServices/"
                            r"locations/[^/]+/operationResults/(?P<op>[^/]+)$")  # fmt: skip


def keyword_answer(review: str) -> str:
    """A 'model' that answers from a few sentiment words (right more often than not)."""
    text = review.lower()
    good = sum(
        text.count(w)
        for w in ("great", "good", "love", "best", "wonderful", "beautiful")
    )
    bad = sum(
        text.count(w) for w in ("bad", "worst", "boring", "awful", "terrible", "waste")
    )
    return "Positive." if good >= bad else "negative"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeAzure:
    """State and scenarios of the fake service; use as a context manager."""

    api_key: str = "test-api-key"
    management_token: str = "test-management-token"
    entra_token: str = "test-entra-token"  # Microsoft Entra ID token for the data plane
    job_outcome: str = "succeeded"
    job_polls_until_done: int = 2
    job_error_message: str = (
        "The training file has too few examples of class 'negative'."
    )
    deployment_outcome: str = "Succeeded"
    deployment_polls_until_done: int = 2
    answer: Callable[[str], str | None] = keyword_answer
    # another answer function for some deployments (a base model's, say)
    answers_by_deployment: dict[str, Callable[[str], str | None]] = field(
        default_factory=dict
    )
    results_base64: bool = True
    requests: list[Recorded] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_deployments: list[str] = field(default_factory=list)
    uploads: int = 0  # fine-tuning files created by POST /openai/files
    jobs_created: int = 0  # jobs created by POST /openai/fine_tuning/jobs
    deployment_puts: int = 0  # PUTs that created or updated a deployment
    _failures: list[tuple[str, re.Pattern, int, dict[str, str], int]] = field(
        default_factory=list
    )
    _lost: list[tuple[str, re.Pattern, int, float]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle

    def __enter__(self) -> FakeAzure:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._scratch = tempfile.TemporaryDirectory(prefix="fake_azure_")
        self.ca_file = str(Path(self._scratch.name) / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_file)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._scratch.cleanup()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}"

    def trusting_environment(self) -> dict[str, str]:
        """Environment variables under which the SDKs trust this server's certificate."""
        return {"SSL_CERT_FILE": self.ca_file, "REQUESTS_CA_BUNDLE": self.ca_file}

    # -- scenarios

    def add_existing_deployment(self, name: str, model: str = "gpt-4o-mini") -> None:
        """A deployment the resource had before the run (a base model's), ready."""
        self.deployments[name] = {
            "id": f"/deployments/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": {"name": "GlobalStandard", "capacity": 10},
            "properties": {
                "model": {"format": "OpenAI", "name": model, "version": "2024-07-18"},
                "provisioningState": "Succeeded",
            },
            "_polls": 0,
            "_operation": None,
        }

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``headers``)."""
        self._failures.append(
            (method, re.compile(path_pattern), status, headers or {}, times)
        )

    def lose_answer(
        self, method: str, path_pattern: str, status: int = 500, delay_s: float = 0.0
    ) -> None:
        """Let the next matching request take effect, then answer it with ``status``
        after ``delay_s`` (longer than the client's timeout: it never sees an answer)."""
        self._lost.append((method, re.compile(path_pattern), status, delay_s))

    def _lost_answer(self, method: str, path: str) -> tuple[int, float] | None:
        with self._lock:
            for index, (m, pattern, status, delay_s) in enumerate(self._lost):
                if m == method and pattern.search(path):
                    self._lost.pop(index)
                    return status, delay_s
        return None

    def _injected_failure(
        self, method: str, path: str
    ) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            for index, (m, pattern, status, headers, times) in enumerate(
                self._failures
            ):
                if m == method and pattern.search(path):
                    if times <= 1:
                        self._failures.pop(index)
                    else:
                        self._failures[index] = (m, pattern, status, headers, times - 1)
                    return status, headers
        return None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == method and re.search(pattern, r.path)
        ]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAzure
    protocol_version = "HTTP/1.1"
    # (status, delay) replacing the real answer of this request (FakeAzure.lose_answer).
    _replace_answer: tuple[int, float] | None = None

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    # -- plumbing

    def _send(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        if self._replace_answer is not None:
            status, delay_s = self._replace_answer
            self._replace_answer = None
            time.sleep(delay_s)
            body = {"error": {"code": "Lost", "message": f"lost answer: HTTP {status}"}}
            headers = None
        payload = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        self.send_response(status)
        content_type = (
            "application/octet-stream"
            if isinstance(body, bytes)
            else "application/json"
        )
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(parts.query)
        self.fake.requests.append(
            Recorded(
                method,
                parts.path,
                query,
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
        )
        if "api-version" not in query:
            return self._error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter is required.",
            )
        injected = self.fake._injected_failure(method, parts.path)
        if injected:
            status, headers = injected
            return self._error(status, "Injected", f"injected HTTP {status}", headers)
        self._replace_answer = self.fake._lost_answer(method, parts.path)
        if parts.path.startswith("/openai/"):
            if (
                self.headers.get("api-key") != self.fake.api_key
                and self.headers.get("Authorization")
                != f"Bearer {self.fake.entra_token}"
            ):
                return self._error(
                    401, "401", "Access denied due to invalid subscription key."
                )
            return self._openai(method, parts.path[len("/openai") :], body)
        if self.headers.get("Authorization") != f"Bearer {self.fake.management_token}":
            return self._error(
                401, "InvalidAuthenticationToken", "The access token is invalid."
            )
        return self._arm(method, parts.path, body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- Azure OpenAI

    def _openai(self, method: str, path: str, body: bytes) -> None:  # noqa: PLR0911 - a router
        fake = self.fake
        if method == "POST" and path == "/files":
            return self._upload(body)
        if method == "GET" and path == "/files":
            return self._list_files()
        if method == "GET" and path == "/fine_tuning/jobs":
            return self._list_jobs()
        match = re.fullmatch(r"/files/([^/]+)(/content)?", path)
        if match:
            file = fake.files.get(match.group(1))
            if file is None:
                return self._error(404, "NotFound", f"File {match.group(1)} not found.")
            if method == "DELETE":
                del fake.files[file["id"]]
                return self._send(
                    200, {"id": file["id"], "object": "file", "deleted": True}
                )
            if match.group(2):
                return self._send(200, file["content"])
            public = {k: v for k, v in file.items() if k != "content"}
            file["status"] = "processed"  # imported by the next look
            return self._send(200, public)
        if method == "POST" and path == "/fine_tuning/jobs":
            return self._create_job(json.loads(body))
        match = re.fullmatch(r"/fine_tuning/jobs/([^/]+)(/events)?", path)
        if match:
            job = fake.jobs.get(match.group(1))
            if job is None:
                return self._error(404, "NotFound", f"Job {match.group(1)} not found.")
            if match.group(2):
                events = list(reversed(job["_events"]))  # newest first, as the API
                return self._send(
                    200, {"object": "list", "data": events, "has_more": False}
                )
            self._advance_job(job)
            return self._send(
                200, {k: v for k, v in job.items() if not k.startswith("_")}
            )
        match = re.fullmatch(r"/deployments/([^/]+)/chat/completions", path)
        if match and method == "POST":
            return self._chat(match.group(1), json.loads(body))
        return self._error(404, "NotFound", f"No route {method} {path}")

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _list_files(self) -> None:
        """All files (no paging, no ``has_more``: as Azure's 2024-10-21 list answers)."""
        purpose = self._query().get("purpose")
        files = [
            {k: v for k, v in f.items() if k not in ("content", "n_lines")}
            for f in list(self.fake.files.values())
            if purpose is None or f["purpose"] == purpose
        ]
        files.sort(key=lambda f: f["id"], reverse=True)  # newest first
        return self._send(200, {"object": "list", "data": files})

    def _list_jobs(self) -> None:
        """Jobs newest first, paged by ``limit`` and ``after``."""
        query = self._query()
        jobs = sorted(self.fake.jobs, reverse=True)
        if "after" in query and query["after"] in jobs:
            jobs = jobs[jobs.index(query["after"]) + 1 :]
        limit = int(query.get("limit", 20))
        page = [
            {k: v for k, v in self.fake.jobs[j].items() if not k.startswith("_")}
            for j in jobs[:limit]
        ]
        return self._send(
            200, {"object": "list", "data": page, "has_more": len(jobs) > limit}
        )

    def _upload(self, body: bytes) -> None:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: "
            + self.headers["Content-Type"].encode()
            + b"\r\n\r\n"
            + body
        )
        fields = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        if "file" not in fields or fields.get("purpose") is None:
            return self._error(400, "invalidPayload", "file and purpose are required")
        purpose = fields["purpose"].get_content().strip()
        content = fields["file"].get_payload(decode=True)
        try:
            lines = [
                json.loads(line)
                for line in content.decode("utf-8").splitlines()
                if line.strip()
            ]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._error(400, "invalidFile", "The file is not valid JSONL.")
        file_id = self.fake.new_id("file")
        with self.fake._lock:
            self.fake.uploads += 1
        self.fake.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": fields["file"].get_filename(),
            "purpose": purpose,
            "status": "pending",
            "content": content,
            "n_lines": len(lines),
        }
        public = {
            k: v
            for k, v in self.fake.files[file_id].items()
            if k not in ("content", "n_lines")
        }
        return self._send(201, public)

    def _create_job(self, request: dict[str, Any]) -> None:
        fake = self.fake
        for key in ("training_file", "validation_file"):
            file_id = request.get(key)
            if key == "training_file" and not file_id:
                return self._error(400, "invalidPayload", "training_file is required")
            if file_id and (
                file_id not in fake.files
                or fake.files[file_id]["status"] != "processed"
            ):
                return self._error(400, "invalidFile", f"File {file_id} is not ready.")
        job_id = fake.new_id("ftjob")
        with fake._lock:
            fake.jobs_created += 1
        fake.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "model": request["model"],
            "training_file": request["training_file"],
            "validation_file": request.get("validation_file"),
            "hyperparameters": request.get("hyperparameters", {}),
            "seed": request.get("seed", 0),
            "suffix": request.get("suffix"),
            "status": "pending",
            "fine_tuned_model": None,
            "result_files": [],
            "trained_tokens": None,
            "error": None,
            "organization_id": "",
            "_polls": 0,
            "_events": [],
            "_request": request,
        }
        self._event(fake.jobs[job_id], "Job enqueued.")
        return self._send(
            201, {k: v for k, v in fake.jobs[job_id].items() if not k.startswith("_")}
        )

    def _event(self, job: dict[str, Any], message: str, level: str = "info") -> None:
        job["_events"].append(
            {
                "id": self.fake.new_id("ftevent"),
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()) + len(job["_events"]),
                "level": level,
                "message": message,
            }
        )

    def _advance_job(self, job: dict[str, Any]) -> None:
        fake = self.fake
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return
        job["_polls"] += 1
        if job["_polls"] == 1:
            job["status"] = "running"
            self._event(job, "Fine-tuning job started.")
            return
        if job["_polls"] < fake.job_polls_until_done or fake.job_outcome == "never":
            self._event(
                job, f"Step {job['_polls']}: training loss={1 / job['_polls']:.3f}"
            )
            return
        job["status"] = fake.job_outcome
        if fake.job_outcome == "succeeded":
            result_id = fake.new_id("file")
            content = RESULTS_CSV.encode()
            fake.files[result_id] = {
                "id": result_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": "results.csv",
                "purpose": "fine-tune-results",
                "status": "processed",
                "content": base64.b64encode(content)
                if fake.results_base64
                else content,
            }
            job["fine_tuned_model"] = f"{job['model']}.ft-{job['id'][-4:]}"
            job["result_files"] = [result_id]
            job["trained_tokens"] = 12345
            self._event(job, "The job has successfully completed.")
        else:
            job["error"] = {
                "code": "invalid_training_file",
                "message": fake.job_error_message,
                "param": "training_file",
            }
            self._event(job, f"The job {fake.job_outcome}.", level="error")

    def _chat(self, deployment: str, request: dict[str, Any]) -> None:
        state = self.fake.deployments.get(deployment)
        if state is None or state["properties"]["provisioningState"] != "Succeeded":
            return self._error(
                404,
                "DeploymentNotFound",
                f"The API deployment {deployment} does not exist.",
            )
        messages = request["messages"]
        if [m["role"] for m in messages] != ["system", "user"]:
            return self._error(
                400, "invalid_request", "expected system and user messages"
            )
        answer_for = self.fake.answers_by_deployment.get(deployment, self.fake.answer)
        answer = answer_for(messages[-1]["content"])
        finish_reason = "content_filter" if answer is None else "stop"
        return self._send(
            200,
            {
                "id": self.fake.new_id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": state["properties"]["model"]["name"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish_reason,
                        "message": {"role": "assistant", "content": answer},
                    }
                ],
                "usage": {
                    "prompt_tokens": 50,
                    "completion_tokens": 1,
                    "total_tokens": 51,
                },
            },
        )

    # -- Azure Resource Manager

    def _arm(self, method: str, path: str, body: bytes) -> None:  # noqa: PLR0911 - a router
        fake = self.fake
        match = OPERATION_PATH.match(path)
        if match and method == "GET":
            for state in fake.deployments.values():
                if state["_operation"] == match.group("op"):
                    self._advance_deployment(state)
                    status = state["properties"]["provisioningState"]
                    failed = status == "Failed"
                    return self._send(
                        200,
                        {
                            "status": {"Creating": "InProgress"}.get(status, status),
                            "error": {
                                "code": "DeploymentFailed",
                                "message": "The fine-tuned model is not available in this region.",
                            }
                            if failed
                            else None,
                        },
                    )
            return self._error(404, "NotFound", "No such operation")
        match = DEPLOYMENT_PATH.match(path)
        if not match:
            return self._error(404, "InvalidResourceType", f"No route {path}")
        name = match.group("name")
        if method == "PUT":
            request = json.loads(body)
            operation = fake.new_id("op")
            with fake._lock:
                fake.deployment_puts += 1
            fake.deployments[name] = {
                "id": path,
                "name": name,
                "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": request["sku"],
                "properties": {
                    "model": request["properties"]["model"],
                    "provisioningState": "Creating",
                },
                "_polls": 0,
                "_operation": operation,
            }
            location = (
                f"{fake.url}/subscriptions/{match.group('sub')}/providers/Microsoft.CognitiveServices/"
                f"locations/swedencentral/operationResults/{operation}?api-version=2024-10-01"
            )
            return self._send(
                201,
                self._public(fake.deployments[name]),
                {"Azure-AsyncOperation": location},
            )
        state = fake.deployments.get(name)
        if state is None:
            return self._error(
                404, "DeploymentNotFound", f"Deployment {name} not found."
            )
        if method == "GET":
            self._advance_deployment(state)
            return self._send(200, self._public(state))
        if method == "DELETE":
            del fake.deployments[name]
            fake.deleted_deployments.append(name)
            return self._send(200)
        return self._error(405, "MethodNotAllowed", method)

    def _advance_deployment(self, state: dict[str, Any]) -> None:
        if state["properties"]["provisioningState"] == "Creating":
            state["_polls"] += 1
            if state["_polls"] >= self.fake.deployment_polls_until_done:
                state["properties"]["provisioningState"] = self.fake.deployment_outcome

    @staticmethod
    def _public(state: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in state.items() if not k.startswith("_")}
