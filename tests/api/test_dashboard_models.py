"""The dashboard's models page: the shown version's model and baselines, and its trigger replay, from its
typed metrics; an older version's metrics (no iALS, no replay) still show."""

import re

from recsys.db import versions
from tests.api.test_dashboard import sign_in

NEW = {"hr@10": 0.81, "ndcg@10": 0.6, "popularity_hr@10": 0.6, "popularity_ndcg@10": 0.4, "ease_hr@10": 0.79,
       "ease_ndcg@10": 0.58, "ease_lambda": 500.0, "ials_hr@10": 0.8, "ials_ndcg@10": 0.59, "ials_factors": 64,
       "ials_reg": 0.1, "replay_sessions": 321, "replay_hours": 24, "replay_served_hr@10": 0.31,
       "replay_served_ndcg@10": 0.2, "replay_faiss_hr@10": 0.28, "replay_faiss_ndcg@10": 0.19}


def _rows(html: str, table: str) -> list[tuple[str, ...]]:
    body = html[html.index(f'<table id="{table}">'):]
    body = body[:body.index("</table>")]
    return [tuple(c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S))
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S) if "<td" in row]


def test_the_models_page_shows_the_baselines_and_the_replay(client, keys, world, db):
    versions.set_metrics(db, world.version, NEW)
    sign_in(client, keys["read"])
    page = client.get("/dashboard/versions").text
    assert f"Quality of version {world.version} (active)" in page
    assert _rows(page, "baselines") == [
        ("this version", "0.810", "0.600", ""),
        ("popularity", "0.600", "0.400", ""),
        ("EASE", "0.790", "0.580", "lambda 500"),
        ("iALS", "0.800", "0.590", "factors 64, reg 0.1"),
    ]
    assert "321 long sessions" in page and "in the next\n  24 hours" in page
    assert _rows(page, "replay") == [
        ("served policy (exploration on, mean over draws)", "0.310", "0.200"),
        ("FAISS neighbourhood of the context slot", "0.280", "0.190"),
    ]


def test_an_old_versions_metrics_show_without_a_replay(client, keys, world):
    sign_in(client, keys["read"])
    page = client.get("/dashboard/versions").text  # the world's version stored {"hr@10": 0.5} only
    assert _rows(page, "baselines") == [("this version", "0.500", "-", "")]
    assert '<table id="replay">' not in page and "No trigger replay for this version" in page
