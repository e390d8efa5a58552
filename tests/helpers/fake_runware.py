"""A scripted Runware for engine unit tests (httpx.MockTransport): charges, faults, getResponse."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeRunware:
    """Answers authentication, imageInference (sync or async), getResponse and imageUpload like Runware.

    ``script``: what happens to successive imageInference requests ("ok" when it runs out):
    ok, 429, 429ra (Retry-After: 2), 503, 400, 401, 402, 500 (refused before running),
    drop / timeout / malformed / 500c (after the task ran and was charged).
    ``retired``: model -> a code of ``MODEL_REFUSALS``: every request for that model is refused so.
    ``key``: the only API key the authentication task accepts (None: any).
    """

    script: list[str] = field(default_factory=list)
    cost: float = 0.011
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # taskUUID -> task (accepted)
    charges: Counter[str] = field(default_factory=Counter)  # taskUUID -> times charged
    prompts: Counter[str] = field(default_factory=Counter)  # prompt -> times charged
    uploads: list[str] = field(default_factory=list)
    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    async_pending: dict[str, int] = field(default_factory=dict)  # polls before an async task is done
    auth: list[str] = field(default_factory=list)
    retired: dict[str, str] = field(default_factory=dict)
    key: str | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def inference_requests(self) -> int:
        return sum(1 for body in self.requests if body[0]["taskType"] == "imageInference")

    def requests_for(self, model: str) -> int:
        """imageInference requests sent for ``model``."""
        return sum(
            1 for b in self.requests if b[0]["taskType"] == "imageInference" and b[0]["model"] == model
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.auth.append(request.headers.get("authorization", ""))
        task = body[0]
        kind = task["taskType"]
        if kind == "imageUpload":
            self.uploads.append(task["image"][:40])
            return _data([{"taskType": kind, "taskUUID": task["taskUUID"], "imageUUID": str(uuid.uuid4())}])
        if kind == "getResponse":
            return self._get_response(task["taskUUID"])
        if kind == "authentication":
            return self._authenticate(task)
        return self._infer(task, request)

    def _infer(self, task: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if task["model"] in self.retired:
            return model_refusal(self.retired[task["model"]], task)
        action = self.script.pop(0) if self.script else "ok"
        if action in MODEL_REFUSALS:
            return model_refusal(action, task)
        refused = {"429": 429, "429ra": 429, "503": 503, "400": 400, "401": 401, "402": 402, "500": 500}
        if action in refused:
            codes = {400: "invalidParameter", 401: "invalidApiKey", 402: "insufficientCredits"}
            status = refused[action]
            headers = {"Retry-After": "2"} if action == "429ra" else {}
            err = {"code": codes.get(status, f"e{status}"), "message": action, "taskUUID": task["taskUUID"]}
            return httpx.Response(status, json={"errors": [err]}, headers=headers)
        uid = task["taskUUID"]
        if uid in self.tasks:
            err = {"code": "conflictTaskUUID", "message": "taskUUID already used", "taskUUID": uid}
            return httpx.Response(400, json={"errors": [err]})
        self._run(task)
        if action == "drop":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if action == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if action == "malformed":
            return httpx.Response(200, content=b'{"data": [{"taskUU')
        if action == "500c":
            return httpx.Response(500, json={"errors": [{"code": "internalError", "message": "oops"}]})
        if task.get("deliveryMethod") == "async":
            self.async_pending[uid] = 2
            return _data([{"taskType": "imageInference", "taskUUID": uid, "status": "processing"}])
        return _data(self._items(uid))

    def _authenticate(self, task: dict[str, Any]) -> httpx.Response:
        if self.key is not None and task.get("apiKey") != self.key:
            err = {"code": "invalidApiKey", "message": "Invalid API key.", "taskType": "authentication"}
            return httpx.Response(401, json={"errors": [err]})
        return _data([{"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())}])

    @property
    def authentications(self) -> int:
        """authentication tasks received."""
        return sum(1 for body in self.requests if body[0]["taskType"] == "authentication")

    def _run(self, task: dict[str, Any]) -> None:
        uid = task["taskUUID"]
        self.tasks[uid] = task
        self.charges[uid] += 1
        self.prompts[task["positivePrompt"]] += 1

    def _items(self, uid: str, status: str | None = None) -> list[dict[str, Any]]:
        n = self.tasks[uid]["numberResults"]
        items = []
        for i in range(n):
            item = {
                "taskType": "imageInference",
                "taskUUID": uid,
                "imageUUID": str(uuid.uuid5(uuid.UUID(uid), str(i))),
                "imageURL": f"http://fake/{uid}-{i}.jpg",
                "cost": self.cost,
            }
            if status:
                item["status"] = status
            items.append(item)
        return items

    def _get_response(self, uid: str) -> httpx.Response:
        if uid not in self.tasks:
            err = {"code": "taskNotFound", "message": "unknown task", "taskUUID": uid}
            return httpx.Response(400, json={"errors": [err]})
        if self.async_pending.get(uid, 0) > 0:
            self.async_pending[uid] -= 1
            return _data([{"taskType": "imageInference", "taskUUID": uid, "status": "processing"}])
        return _data(self._items(uid, status="success"))


#: How a provider that dropped a model answers (HTTP status of each code).
MODEL_REFUSALS = {"invalidModel": 400, "modelNotFound": 404, "modelUnavailable": 503}


def model_refusal(code: str, task: dict[str, Any]) -> httpx.Response:
    err = {
        "code": code,
        "message": f"Model {task['model']} is not available.",
        "parameter": "model",
        "taskType": "imageInference",
        "taskUUID": task["taskUUID"],
    }
    return httpx.Response(MODEL_REFUSALS[code], json={"errors": [err]})


def _data(items: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"data": items})
