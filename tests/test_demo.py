"""`recsys demo`'s parts that a first run and a second run depend on: the port, the key, the verdict."""

from __future__ import annotations

import socket

from recsys.cli.demo import _print_verdict, choose_port, demo_key, try_it
from recsys.db import versions
from recsys.db.apikeys import find_key, revoke_key


def test_the_wanted_port_when_free_else_another_with_the_taken_one_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert choose_port("127.0.0.1", free) == (free, None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free))
        busy.listen()
        port, taken = choose_port("127.0.0.1", free)
    assert taken == free and port != free and port > 0


def test_the_demo_key_is_kept_and_reused_until_the_database_forgets_it(db, tmp_path):
    path = tmp_path / "data" / "demo-api-key"
    key, reused = demo_key(db, path)
    assert not reused and path.read_text().strip() == key
    assert path.stat().st_mode & 0o077 == 0
    assert find_key(db, key).allows("admin")
    assert demo_key(db, path) == (key, True)
    revoke_key(db, find_key(db, key).prefix)
    fresh, reused = demo_key(db, path)
    assert not reused and fresh != key and path.read_text().strip() == fresh


def test_the_demo_prints_the_verdict_in_words(db, capsys):
    version = versions.create_version(db, "neumf", {})
    versions.set_metrics(db, version, {
        "hr@10": 0.552, "ndcg@10": 0.30, "popularity_hr@10": 0.562, "popularity_ndcg@10": 0.31,
        "gate": {"passed": False, "reason": "HR@10 0.552 is below the floor 0.6"},
    })
    _print_verdict(db, version)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"    version {version} (training):",
        "    NeuMF (HR@10 0.552) does not beat popularity by -0.010 HR@10 (-0.010 NDCG@10).",
        "    The quality gate refused it (not activated): HR@10 0.552 is below the floor 0.6.",
        "    no version is active: the API serves popularity lists until one passes the gate",
    ]


def test_the_demo_ends_with_its_keys_scopes_and_the_dashboard():
    lines = try_it("http://127.0.0.1:8001", "rsk_abc", "p7")
    assert lines[0].startswith("Try it (API key: rsk_abc, scopes read, ingest, admin")
    assert "    open http://127.0.0.1:8001/dashboard and sign in with the key (the operator dashboard)" in lines
    ask = '    curl -H "Authorization: Bearer rsk_abc" "http://127.0.0.1:8001/v1/players/p7/recommendations?k=5"'
    assert ask in lines
