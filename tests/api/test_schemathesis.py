"""The API against its own OpenAPI document: schemathesis' command line, every check on, against a
real server, for every operation (the SSE stream excluded), with a fixed seed and budget of examples.

Every check: no server error; every response conforms to the document (status code, content type,
headers, body schema); a request the document allows is accepted and one it forbids is refused
(issue 22: 11 x ST202, blank ids, control characters and non-RFC-3339 times the document allowed);
an undeclared method gets 405 and ``OPTIONS`` lists exactly the declared ones (1 x ST205); missing
or ignored credentials are refused. ``tests/api/schemathesis.toml`` lists the operations where a
well-formed value can still be wrong for what is stored or for the clock, and why.

The command line, not ``operation.as_strategy()``: only its coverage phase sends the boundary values
and undeclared methods that found the ST202 and ST205 failures.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn

from api.app import create_app
from tests.api.conftest import SERVING

EXAMPLES = 30
"""Fuzzed examples per operation (16 operations), after the coverage phase's own cases: about 1,500
requests, a minute and a half on 2 cores."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_api(world, settings, keys):
    app = create_app(settings.replace(**{**SERVING, "api_key_cache_seconds": 60.0}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", headers=keys["admin"])
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_conforms_to_its_openapi_document(live_api, tmp_path):
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
               f"{live_api.url}/schema/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(EXAMPLES), "--seed", "22", "--generation-database", "none", "--workers", "1",
               "--exclude-path-regex", "/stream$", "--header", f"Authorization: {live_api.headers['Authorization']}",
               "--continue-on-failure"]
    # In a folder of its own: schemathesis keeps a cache (.schemathesis/) where it runs.
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20_000:]
    assert re.search(r"Operations:\s+16 selected / 17 total", output), output[-5_000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert summary and int(summary[1]) > 16 * EXAMPLES, output[-5_000:]
    print(f"schemathesis: {summary[1]} requests over 16 operations, every check, no failure")


def test_options_lists_every_method_of_a_path(client, keys):
    # Issue 22, ST205: Litestar listed only the first handler's method ("GET, OPTIONS").
    response = client.options("/v1/experiments")
    assert response.status_code == 204 and response.headers["allow"] == "GET, OPTIONS, POST"
    assert client.options("/v1/players").headers["allow"] == "OPTIONS, PUT"
    assert client.delete("/v1/experiments", headers=keys["admin"]).status_code == 405


def test_the_document_says_what_the_api_takes(client):
    from api.bodies import ID_SCHEMA, RFC3339

    document = client.get("/schema/openapi.json").json()
    schemas = document["components"]["schemas"]
    event = schemas["EventIn"]["properties"]
    assert {key: event["player_id"][key] for key in ID_SCHEMA} == ID_SCHEMA  # no blank id, no control character
    assert event["ts"]["format"] == "date-time" and event["ts"]["pattern"] == RFC3339
    assert event["type"]["enum"] == ["start", "heartbeat", "spin", "end"]
    assert schemas["FeedbackIn"]["properties"]["recommendation_id"]["format"] == "uuid"
    assert schemas["SlotFields"]["properties"]["markets"]["anyOf"][0]["maxItems"] == 100
    parameters = {p["name"]: p["schema"] for p in
                  document["paths"]["/v1/players/{player_id}/recommendations"]["get"]["parameters"]}
    assert parameters["player_id"]["pattern"] == ID_SCHEMA["pattern"]
    assert parameters["market"]["oneOf"][0]["pattern"] == "^[^\\x00-\\x1f\\x7f]*$"
    ok = re.compile(RFC3339)
    assert ok.match("2026-03-01T21:14:05Z") and ok.match("2026-03-01T21:14:05.25+15:59")
    assert not ok.match("2026-03-01T21:14:05+16:00") and not ok.match("") and not ok.match("0001-01-01T00:00:00Z")


def test_the_schema_page_loads_nothing_from_elsewhere_and_the_document_is_complete(client):
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "http" not in page.text  # no CDN: links are relative
    assert "/schema/openapi.json" in page.text and "/schema/openapi.yaml" in page.text
    assert client.get("/schema/openapi.yaml").status_code == 200
    document = client.get("/schema/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API key: rsk_<8 hex>_<secret> (docs/api.md)."}
    events = document["paths"]["/v1/events"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    assert events["security"] == [{"bearer": []}]
    assert set(events["responses"]) == {"200", "400", "401", "403", "413", "422", "503"}
    assert events["responses"]["503"]["headers"]["Retry-After"]
    assert "application/problem+json" in events["responses"]["422"]["content"]
    feedback = document["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert feedback == {"oneOf": [{"$ref": "#/components/schemas/FeedbackBatch"},
                                  {"$ref": "#/components/schemas/FeedbackIn"}]}
    assert "409" in document["paths"]["/v1/models/{version}/activate"]["post"]["responses"]
