"""Per-token request budgets of ``thoracic serve`` (``--rate-limit``, ``--tokens-file``): the real app
in-process, and once as the real server."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from serve_helpers import AUTH, TOKEN, need, server_command, stop, wait_until_healthy

from thoracic.errors import ConfigError
from thoracic.serve.config import ServeConfig
from thoracic.serve.limits import RateLimit, RateLimiter, token_id

need("fastapi")

OTHER = "second-client-token-91c2"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("text", "requests", "period"), [
    ("60/min", 60, 60.0), ("60/minute", 60, 60.0), ("1000/h", 1000, 3600.0), ("5/10s", 5, 10.0),
    ("3/0.5s", 3, 0.5), ("2 / 3 hours", 2, 10800.0), ("1/d", 1, 86400.0), ("7/SEC", 7, 1.0),
])
def test_rate_limits_are_parsed(text, requests, period):
    assert RateLimit.parse(text) == RateLimit(requests, period)


@pytest.mark.parametrize("text", ["", "60", "60/", "/min", "60/ms", "60/fortnight", "0/min", "-1/min", "5/0s",
                                  "1.5/min", "60 per minute"])
def test_bad_rate_limits_are_config_errors(text):
    with pytest.raises(ConfigError, match="rate limit"):
        RateLimit.parse(text)


def test_the_window_slides_and_refusals_do_not_count():
    now = [100.0]
    limiter = RateLimiter(RateLimit(3, 10.0), clock=lambda: now[0])
    takes = []
    for t in (100.0, 101.0, 102.0, 104.2):
        now[0] = t
        takes.append(limiter.take("a"))
    assert takes == [0, 0, 0, 6]  # the oldest leaves the window at 110: ceil(5.8)
    assert limiter.take("b") == 0  # another client: its own budget
    now[0] = 109.99
    assert limiter.take("a") == 1  # at least 1 (the refusals at 104.2 and here did not count)
    now[0] = 110.0
    assert limiter.take("a") == 0  # the one of 100 left the window: one admitted...
    assert limiter.take("a") == 1  # ...and the next waits for the one of 101


def test_token_ids_are_short_digests_not_tokens():
    assert token_id(TOKEN) != token_id(OTHER) and len(token_id(TOKEN)) == 12
    assert TOKEN not in token_id(TOKEN)
    s = ServeConfig(token=TOKEN, tokens=(OTHER, TOKEN), rate_limit="2/min")
    assert s.all_tokens == (TOKEN, OTHER)
    assert TOKEN not in repr(s) and OTHER not in repr(s) and "tokens=2" in repr(s)
    with pytest.raises(ConfigError, match="empty"):
        ServeConfig(token=TOKEN, tokens=("  ",))


def test_a_token_over_its_budget_gets_429_with_retry_after_and_others_do_not(make_client):
    client = make_client(tokens=(OTHER,), rate_limit="3/60s")
    for _ in range(3):
        assert client.get("/v1/models", headers=AUTH).status_code == 200
    r = client.get("/v1/models", headers=AUTH)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limited"
    assert "3 requests per 60 s" in r.json()["error"]["message"]
    retry = r.headers["Retry-After"]
    assert retry.isdigit() and 55 <= int(retry) <= 60
    # analyses and downloads count against the same budget
    assert client.post("/v1/analyze", content=b"x", headers=AUTH).status_code == 429
    assert client.get("/v1/results/nothing", headers=AUTH).status_code == 429
    # the other client's budget is its own; no token and a wrong one are 401s that count for nobody
    assert [client.get("/v1/models", headers=_bearer(OTHER)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=_bearer("not-a-token")).status_code == 401
    assert client.get("/health").status_code == 200  # liveness needs no token and has no budget


def test_the_budget_comes_back_after_the_period(make_client):
    client = make_client(rate_limit="2/0.6s")
    assert [client.get("/v1/models", headers=AUTH).status_code for _ in range(3)] == [200, 200, 429]
    r = client.get("/v1/models", headers=AUTH)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"  # whole seconds, rounded up
    time.sleep(0.65)
    assert [client.get("/v1/models", headers=AUTH).status_code for _ in range(3)] == [200, 200, 429]


def test_without_a_rate_limit_there_is_no_budget(make_client):
    client = make_client()
    assert {client.get("/v1/models", headers=AUTH).status_code for _ in range(30)} == {200}


def test_the_real_server_takes_the_flags(tmp_path, require):
    """``thoracic serve --tokens-file --rate-limit --audit-log`` as a subprocess (uvicorn)."""
    httpx = require("httpx")
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "tokens").write_text(f"# one per client\n{OTHER}\n\n")
    audit = tmp_path / "audit" / "audit.jsonl"
    audit.parent.mkdir()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "THORACIC_TOKEN"}
    cmd = [*server_command(), "--port", "0", "--token-file", str(tmp_path / "token"), "--tokens-file",
           str(tmp_path / "tokens"), "--rate-limit", "2/min", "--audit-log", str(audit), "--threads", "1"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=tmp_path)
    try:
        url = proc.stdout.readline().split()[2]
        wait_until_healthy(url, proc, log)
        with httpx.Client(base_url=url, timeout=60) as http:
            statuses = [http.post("/v1/analyze", content=b"junk", headers=AUTH).status_code for _ in range(3)]
            limited = http.get("/v1/models", headers=AUTH)
            other = http.get("/v1/models", headers=_bearer(OTHER))
    finally:
        stop(proc)
    assert statuses == [415, 415, 429]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert other.status_code == 200
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(x["token"], x["outcome"], x["type"]) for x in lines] == [
        (token_id(TOKEN), "refused", "unsupported_format")] * 2 + [(token_id(TOKEN), "refused", "rate_limited")]
    assert oct(audit.stat().st_mode & 0o777) == "0o600"
    text = log.read_text()
    assert f"API tokens: 2 (ids {token_id(TOKEN)}, {token_id(OTHER)})" in text
    assert "request budget per token: 2 requests per 60 s; audit log: on" in text
    assert TOKEN not in text and OTHER not in text
