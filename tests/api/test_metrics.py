"""`/metrics`: a valid Prometheus content type, and the index gauge counts provisional slots."""

from __future__ import annotations

import re

NEW_SLOT = {"name": "New", "provider": "p2", "theme": "fruit", "volatility": "medium", "rtp": 96.1,
            "min_bet": 0.2, "max_bet": 50}


def _index_slots(client) -> int:
    return int(re.search(r"^recsys_index_slots (\d+)$", client.get("/metrics").text, re.MULTILINE).group(1))


def test_the_content_type_names_the_format_and_one_charset(client):
    assert client.get("/metrics").headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_a_new_slot_counts_in_the_index_gauge_at_once(client, keys):
    before = _index_slots(client)
    assert before > 0
    assert client.put("/v1/slots/brand-new", json=NEW_SLOT, headers=keys["ingest"]).json()["inserted"] == 1
    assert _index_slots(client) == before + 1
