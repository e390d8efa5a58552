"""`pipeline sandbox` as a process, and the sandbox in a background thread surviving its clients."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers.paths import ROOT

from pipeline.cli import build_parser, main
from pipeline.cli.sandbox import build_settings
from pipeline.sandbox import SandboxSettings, SandboxThread

AUTH = {"Authorization": "Bearer k"}


def inference(**overrides: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "openai:1@2",
        "positivePrompt": "a snail racing a tortoise",
        "width": 1024,
        "height": 1024,
        "providerSettings": {"openai": {"quality": "high", "background": "opaque"}},
        **overrides,
    }


@pytest.fixture
def cli_sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`pipeline sandbox --port 0 --json` with the test's extra flags; its URL from the JSON line."""
    flags: list[str] = getattr(request, "param", [])
    cmd = [sys.executable, "-m", "pipeline", "sandbox", "--port", "0", "--json", "--quiet", *flags]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield proc, json.loads(line)["url"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class TestCommand:
    def test_serves_and_stops_on_sigterm(self, cli_sandbox: tuple[subprocess.Popen[str], str]) -> None:
        """The command prints its URL, serves tasks, and exits 0 on SIGTERM."""
        proc, url = cli_sandbox
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        response = httpx.post(url, json=[inference()], headers=AUTH, timeout=30)
        assert response.status_code == 200
        assert response.json()["data"][0]["cost"] == 0.036
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0

    @pytest.mark.parametrize("cli_sandbox", [["--fault", "503=1", "--api-key", "only-this"]], indirect=True)
    def test_flags_apply(self, cli_sandbox: tuple[subprocess.Popen[str], str]) -> None:
        """--api-key and --fault shape what the server answers."""
        _, url = cli_sandbox
        assert httpx.post(url, json=[inference()], headers=AUTH, timeout=30).status_code == 401
        headers = {"Authorization": "Bearer only-this"}
        assert httpx.post(url, json=[inference()], headers=headers, timeout=30).status_code == 503

    @pytest.mark.parametrize(
        ("flags", "reason"),
        [
            (["--fault", "418=0.5"], "unknown fault"),
            (["--fault", "429"], "KIND=RATE"),
            (["--fault", "429=lots"], "not a number"),
            (["--latency", "soon"], "--latency"),
            (["--capacity", "0"], "--capacity"),
            (["--retire", "openai:1@2=teapot"], "unknown code 'teapot'"),
            (["--retire", "acme:1@1"], "unknown model 'acme:1@1'"),
            (["--retire", "=modelNotFound"], "MODEL[=CODE]"),
            (["--today", "2026-13-01"], "--today"),
        ],
    )
    def test_bad_flags_exit_2(
        self, flags: list[str], reason: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad flag exits 2 with a message naming it, not a traceback."""
        with pytest.raises(SystemExit) as info:
            main(["sandbox", "--port", "0", *flags])
        assert info.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert reason in err
        assert "Traceback" not in err


class TestRetireFlags:
    def test_flags_build_the_settings(self) -> None:
        """--lifecycle, --retire MODEL[=CODE] (repeatable, invalidModel by default) and --today."""
        parser = build_parser(["sandbox"])
        flags = ["--lifecycle", "--retire", "openai:1@2", "--retire", "openai:1@1=modelNotFound"]
        args = parser.parse_args(["sandbox", *flags, "--today", "2026-12-01"])
        settings = build_settings(args)
        assert settings.lifecycle
        assert settings.retire == {"openai:1@2": "invalidModel", "openai:1@1": "modelNotFound"}
        assert settings.today == dt.date(2026, 12, 1)
        plain = build_settings(parser.parse_args(["sandbox"]))
        assert (plain.lifecycle, plain.retire, plain.today) == (False, {}, None)

    @pytest.mark.parametrize("cli_sandbox", [["--retire", "openai:1@2=modelUnavailable"]], indirect=True)
    def test_retired_model_is_refused_by_the_server(
        self, cli_sandbox: tuple[subprocess.Popen[str], str]
    ) -> None:
        """The running server answers a retired model as the flag says, and serves the others."""
        _, url = cli_sandbox
        retired = httpx.post(url, json=[inference()], headers=AUTH, timeout=30)
        assert (retired.status_code, retired.json()["errors"][0]["code"]) == (503, "modelUnavailable")
        other = inference(model="openai:1@1")
        assert httpx.post(url, json=[other], headers=AUTH, timeout=30).status_code == 200


_CLIENT = textwrap.dedent(
    """
    import sys, httpx
    task = {"taskType": "imageInference", "taskUUID": sys.argv[2], "model": "openai:1@2",
            "positivePrompt": "killed mid-request", "width": 1024, "height": 1024}
    print("sending", flush=True)
    httpx.post(sys.argv[1], json=[task], headers={"Authorization": "Bearer k"}, timeout=600)
    """
)


class TestThread:
    def test_state_survives_a_killed_client(self) -> None:
        """A client killed while its request hangs: the task is charged once and getResponse returns it."""
        with SandboxThread(SandboxSettings(faults={"hang": 1.0})) as sb:
            task_uuid = str(uuid.uuid4())
            client = subprocess.Popen(
                [sys.executable, "-c", _CLIENT, sb.url, task_uuid], stdout=subprocess.PIPE, text=True
            )
            assert client.stdout is not None
            client.stdout.readline()
            deadline = time.monotonic() + 30
            while sb.billing()["tasks"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            client.kill()
            client.wait(10)
            client.stdout.close()
            sb.configure(faults={})
            poll = [{"taskType": "getResponse", "taskUUID": task_uuid}]
            items = httpx.post(sb.url, json=poll, headers=AUTH, timeout=30).json()["data"]
            assert items[0]["status"] == "success"
            billing = sb.billing()
        assert (billing["tasks"], billing["duplicate_tasks"]) == (1, 0)

    def test_controls_from_sync_code(self) -> None:
        """configure, top_up and billing work from the calling thread; leaving with a hang open ends it."""
        with SandboxThread(SandboxSettings(balance_usd=0.0)) as sb:
            assert httpx.post(sb.url, json=[inference()], headers=AUTH, timeout=30).status_code == 402
            sb.top_up(0.036)
            assert httpx.post(sb.url, json=[inference()], headers=AUTH, timeout=30).status_code == 200
            assert sb.billing()["balance_usd"] == 0.0
            sb.configure(balance_usd=None, faults={"hang": 1.0})
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(sb.url, json=[inference()], headers=AUTH, timeout=0.3)
        assert sb.billing()["tasks"] == 2
