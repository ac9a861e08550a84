"""Secrets stay out of logs however they are spelled; a percent-encoded key name is the same name."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from settings.logging import configure_logging
from settings.redaction import is_secret_name, scrub, scrub_text
from tests.conftest import API_KEY, wait_for

KEY = "s3cr3t-KEY-value"


@pytest.mark.parametrize(
    "text",
    [
        f"/jobs/1/ws?api_key={KEY}",
        f"/jobs/1/ws?api%5Fkey={KEY}",  # '%5F' is '_': Starlette reads this as api_key
        f"/jobs/1/ws?api%5fkey={KEY}&x=1",
        f"/jobs/1/ws?API%255FKEY={KEY}",  # encoded twice
        f"/ws/jobs?status=queued&x%2Dapi%2Dkey={KEY}",
        f"/ws/jobs?a=1;api_key={KEY}",
        f"GET /x?access%5Ftoken={KEY} HTTP/1.1",
        f"/ws?\uff41\uff50\uff49_key={KEY}",  # fullwidth letters: no key to the gateway, still masked
        f"redis://:{KEY}@redis:6379/0",
        f"redis://user:{KEY}@host:6379/0 and more",
        f"redis://user:p@ss{KEY}@host/0",  # an '@' inside the password
        f"authorization: Bearer {KEY}",
        f"Basic {KEY}==",
        f"GET /download/{KEY}",  # a download link's token is a credential of its own
    ],
)
def test_secrets_in_text_are_masked_after_percent_decoding(text: str) -> None:
    scrubbed = scrub_text(text)
    assert KEY not in scrubbed and "***" in scrubbed, scrubbed


def test_ordinary_text_is_left_alone() -> None:
    for text in ("/jobs?status=queued&limit=5", "job.failed reason=model.ifc is not IFC", "user@example.com",
                 "tokens_used=3", "https://example.com/a?b=c"):
        assert scrub_text(text) == text


def test_secret_fields_and_headers_are_masked_at_any_depth() -> None:
    assert is_secret_name("X-Api-Key") and is_secret_name("api%5Fkey") and is_secret_name("Authorization")
    event = {"headers": {"X-API-Key": KEY, "accept": "*/*", "authorization": f"Bearer {KEY}"},
             "urls": [f"http://h/?api_key={KEY}"], "status": 200}
    assert KEY not in json.dumps(scrub(event)) and scrub(event)["headers"]["accept"] == "*/*"


def test_the_log_pipeline_masks_an_encoded_key_in_our_events_and_in_stdlib_records(monkeypatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    configure_logging("INFO", json=True)
    structlog.get_logger("t").info("http.request", path=f"/x?api%5Fkey={KEY}", headers={"x-api-key": KEY})
    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:1", f"/ws?api%5Fkey={KEY}")
    text = buffer.getvalue()
    assert len(text.splitlines()) == 2 and KEY not in text, text


def test_a_percent_encoded_key_name_authenticates_a_socket_and_is_not_logged(gateway, shared) -> None:
    # RFC 3986: '%5F' and '_' are the same character, and Starlette decodes names: the socket is
    # authenticated (so the job lookup answers 4404, not 4401/4403), and the log redacts the same name.
    ws = "ws" + gateway.removeprefix("http")
    with ws_connect(f"{ws}/jobs/nosuchjob/ws?api%5Fkey={API_KEY}", open_timeout=5) as s:
        with pytest.raises(ConnectionClosed):
            s.recv(timeout=5)
    assert s.close_code == 4404
    with ws_connect(f"{ws}/jobs/nosuchjob/ws?api%5Fkey=wrong-{API_KEY}", open_timeout=5) as s:
        with pytest.raises(ConnectionClosed):
            s.recv(timeout=5)
    assert s.close_code == 4403
    assert shared.gateway is not None
    log_path = shared.gateway.process.log_path
    wait_for(lambda: log_path.read_text().count("api%5Fkey=***") >= 2, what="the sockets' log lines")
    assert API_KEY not in log_path.read_text()
