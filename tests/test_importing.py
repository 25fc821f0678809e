"""Reading and checking import files and batches (no database): recsys.importing."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.errors import InputError
from recsys.importing import load_file, read_file, validate_frame, validate_records

SESSIONS_HEADER = "session_id,player_id,slot_id,started_at,ended_at,spins,total_bet,total_win,bonus\n"
GOOD_SESSION = "s1,p1,g1,2024-05-01T18:00:00Z,2024-05-01T19:30:00+01:00,120,60.5,48.25,false\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sessions_csv(tmp_path, *rows: str, name: str = "sessions.csv"):
    return write(tmp_path, name, SESSIONS_HEADER + "".join(rows))


def error_of(call) -> InputError:
    with pytest.raises(InputError) as info:
        call()
    return info.value


# --- good input -> typed values -------------------------------------------------------------------


def test_sessions_csv_is_typed_and_zones_become_utc(tmp_path):
    path = sessions_csv(tmp_path, GOOD_SESSION, "s2,p2,g1,2024-05-02 08:00:00.250+02:00,,0,0,0,1\n")
    frame = load_file(path, "sessions")
    assert list(frame.columns) == [
        "session_id", "player_id", "slot_id", "started_at", "ended_at", "spins", "total_bet", "total_win", "bonus",
    ]
    assert frame["started_at"].tolist() == [
        pd.Timestamp("2024-05-01T18:00:00Z"),
        pd.Timestamp("2024-05-02T06:00:00.250Z"),
    ]
    assert frame["ended_at"][0] == pd.Timestamp("2024-05-01T18:30:00Z")
    assert pd.isna(frame["ended_at"][1])
    assert frame["spins"].tolist() == [120, 0]
    assert frame["total_bet"].tolist() == [60.5, 0.0]
    assert frame["bonus"].tolist() == [False, True]
    assert str(frame["started_at"].dtype) == "datetime64[us, UTC]"


def test_slots_markets_split_on_the_separator(tmp_path):
    path = write(
        tmp_path,
        "slots.csv",
        "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet,release_date,active,markets\n"
        "g1,Book of Ra,Novomatic,egyptian,high,96.1,0.1,100,2021-03-04,true,GB| SE |NL\n"
        "g2,Fruit,Acme,fruit,low,94,0.2,0.2,,0,\n",
    )
    frame = load_file(path, "slots")
    assert frame["markets"][0] == ["GB", "SE", "NL"]
    assert pd.isna(frame["markets"][1])
    assert frame["release_date"][0] == pd.Timestamp("2021-03-04")
    assert frame["active"].tolist() == [True, False]
    assert frame["rtp"].tolist() == [96.1, 94.0]


def test_optional_columns_may_be_left_out(tmp_path):
    path = write(tmp_path, "players.csv", "player_id\np1\np2\n")
    frame = load_file(path, "players")
    assert list(frame.columns) == ["player_id"]
    assert frame["player_id"].tolist() == ["p1", "p2"]


def test_market_na_is_a_market_not_a_missing_value(tmp_path):
    path = write(tmp_path, "players.csv", "player_id,market\np1,NA\n")
    assert load_file(path, "players")["market"].tolist() == ["NA"]


def test_parquet_keeps_its_types(tmp_path):
    table = pa.table(
        {
            "slot_id": ["g1", "g2"],
            "name": ["A", "B"],
            "provider": ["P", "P"],
            "theme": ["fruit", "asian"],
            "volatility": ["low", "medium"],
            "rtp": [95.5, 96.0],
            "min_bet": [0.1, 0.2],
            "max_bet": [10.0, 20.0],
            "active": [True, False],
            "markets": pa.array([["GB", "SE"], []], type=pa.list_(pa.string())),
        }
    )
    path = tmp_path / "slots.parquet"
    pq.write_table(table, path)
    frame = load_file(path, "slots")
    assert frame["markets"][0] == ["GB", "SE"]
    assert pd.isna(frame["markets"][1])  # empty: every market (docs/import-format.md)
    assert frame["active"].tolist() == [True, False]


def test_parquet_timestamps_need_a_zone(tmp_path):
    start = pd.Timestamp("2024-05-01T18:00:00")
    base = {"session_id": ["s1"], "player_id": ["p1"], "slot_id": ["g1"]}
    aware = tmp_path / "aware.parquet"
    pq.write_table(pa.table({**base, "started_at": pa.array([start.tz_localize("Europe/Stockholm")])}), aware)
    assert load_file(aware, "sessions")["started_at"][0] == pd.Timestamp("2024-05-01T16:00:00Z")
    naive = tmp_path / "naive.parquet"
    pq.write_table(pa.table({**base, "started_at": pa.array([start])}), naive)
    error = error_of(lambda: load_file(naive, "sessions"))
    assert (error.row, error.field) == (1, "started_at")
    assert "no time zone" in error.message


def test_gzipped_csv(tmp_path):
    path = tmp_path / "sessions.csv.gz"
    path.write_bytes(gzip.compress((SESSIONS_HEADER + GOOD_SESSION).encode()))
    assert load_file(path, "sessions")["session_id"].tolist() == ["s1"]


def test_records_from_an_api_batch_are_checked_the_same_way():
    frame = validate_records(
        [
            {"player_id": "p1", "market": "GB", "marketing_consent": True, "registered_at": "2024-01-01T00:00:00Z"},
            {"player_id": "p2", "market": None, "marketing_consent": False, "registered_at": None},
        ],
        "players",
    )
    assert frame["marketing_consent"].tolist() == [True, False]
    assert frame["registered_at"][0] == pd.Timestamp("2024-01-01T00:00:00Z")
    batch = [{"player_id": "p1", "risk_flag": False}, {"player_id": "p2", "risk_flag": "maybe"}]
    error = error_of(lambda: validate_records(batch, "players"))
    assert (error.source, error.row, error.field) == ("request", 2, "risk_flag")
    # A field given for some records only is empty in the others: no silent default for a flag.
    error = error_of(lambda: validate_records([{"player_id": "p1"}, {"player_id": "p2", "risk_flag": True}], "players"))
    assert (error.row, error.field) == (1, "risk_flag")


def test_api_markets_as_a_list():
    record = {"slot_id": "g1", "name": "A", "provider": "P", "theme": "t", "volatility": "low",
              "rtp": 95, "min_bet": 0, "max_bet": 1, "markets": ["GB", "US-NJ"]}
    assert validate_records([record], "slots")["markets"][0] == ["GB", "US-NJ"]
    error = error_of(lambda: validate_records([{**record, "markets": ["GB", "no way"]}], "slots"))
    assert (error.row, error.field) == (1, "markets")


def test_an_empty_list_of_markets_is_every_market(tmp_path):
    # docs/import-format.md: empty = every market, stored as NULL (issue 22: '{}', served nowhere).
    record = {"slot_id": "g1", "name": "A", "provider": "P", "theme": "t", "volatility": "low",
              "rtp": 95, "min_bet": 0, "max_bet": 1}
    frame = validate_records([{**record, "markets": []}, {**record, "slot_id": "g2", "markets": ["GB"]}], "slots")
    assert pd.isna(frame["markets"][0]) and frame["markets"][1] == ["GB"]
    table = pa.table({**{k: [v] * 2 for k, v in record.items()}, "slot_id": ["g1", "g2"],
                      "markets": pa.array([[], ["SE"]], type=pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "slots.parquet")
    frame = load_file(tmp_path / "slots.parquet", "slots")
    assert pd.isna(frame["markets"][0]) and frame["markets"][1] == ["SE"]


def test_more_markets_than_the_bound_name_the_row(tmp_path):
    from recsys.importing import MAX_MARKETS

    header = "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet,markets\n"
    many = "|".join(f"M{i}" for i in range(MAX_MARKETS + 1))
    path = write(tmp_path, "slots.csv", header + "g1,A,P,t,low,95,0,1,GB\n" + f"g2,B,P,t,low,95,0,1,{many}\n")
    error = error_of(lambda: load_file(path, "slots"))
    assert (error.row, error.field) == (2, "markets")
    assert f"{MAX_MARKETS + 1} markets; at most {MAX_MARKETS}" in str(error)
    fits = "|".join(f"M{i}" for i in range(MAX_MARKETS))
    path = write(tmp_path, "slots.csv", header + f"g1,A,P,t,low,95,0,1,{fits}\n")
    assert len(load_file(path, "slots")["markets"][0]) == MAX_MARKETS


# --- bad input -> InputError naming the source, the row and the field ----------------------------


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ("s2,p1,g1,2024-05-01 18:00:00,,1,1,1,true\n", "started_at", "no time zone"),
        ("s2,p1,g1,01/05/2024 18:00Z,,1,1,1,true\n", "started_at", "not an ISO 8601 timestamp"),
        ("s2,p1,g1,2024-02-30T18:00:00Z,,1,1,1,true\n", "started_at", "not an ISO 8601 timestamp"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,2024-05-01T17:00:00Z,1,1,1,true\n", "ended_at", "negative duration"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,many,1,1,true\n", "spins", "not a whole number"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1.5,1,1,true\n", "spins", "not a whole number"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1,-3,1,true\n", "total_bet", "negative"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1,nan,1,true\n", "total_bet", "not a number"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1,1,1e13,true\n", "total_win", "too large"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1,1,1,yes\n", "bonus", "not a boolean"),
        ("s2,p1,g1,2024-05-01T18:00:00Z,,1,1,1,\n", "bonus", "leave the column out"),
        ("s1,p1,g1,2024-05-01T18:00:00Z,,1,1,1,true\n", "session_id", "duplicate session_id 's1' (first in row 1)"),
        (",p1,g1,2024-05-01T18:00:00Z,,1,1,1,true\n", "session_id", "a value is required"),
        ("s2,   ,g1,2024-05-01T18:00:00Z,,1,1,1,true\n", "player_id", "blank"),
        (f"{'x' * 129},p1,g1,2024-05-01T18:00:00Z,,1,1,1,true\n", "session_id", "at most 128"),
    ],
)
def test_a_bad_session_row_is_named(tmp_path, row, field, needle):
    path = sessions_csv(tmp_path, GOOD_SESSION, row)
    error = error_of(lambda: load_file(path, "sessions"))
    assert (error.source, error.row, error.field) == (str(path), 2, field)
    assert needle in error.message
    assert f"{path}, row 2, field {field!r}: " in str(error)


@pytest.mark.parametrize(
    ("values", "field", "needle"),
    [
        ("high,0,0.1,1", "rtp", "not a percentage"),
        ("high,100.5,0.1,1", "rtp", "not a percentage"),
        ("extreme,96,0.1,1", "volatility", "'extreme' is not one of low, medium, high"),
        ("High,96,0.1,1", "volatility", "not one of"),
        ("low,96,2,1", "max_bet", "max_bet 1 is below min_bet 2"),
        ("low,96,abc,1", "min_bet", "not a number"),
    ],
)
def test_a_bad_slot_row_is_named(tmp_path, values, field, needle):
    path = write(
        tmp_path, "slots.csv",
        "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet\n"
        "g1,A,P,fruit,low,96,0.1,1\n"
        f"g2,B,P,fruit,{values}\n",
    )
    error = error_of(lambda: load_file(path, "slots"))
    assert (error.row, error.field) == (2, field)
    assert needle in error.message


def test_the_first_bad_row_is_reported_and_the_others_counted(tmp_path):
    good = [f"s{i},p1,g1,2024-05-01T18:00:00Z,,1,1,1,true\n" for i in range(10, 1000)]
    bad = ["x1,p1,g1,2024-05-01T18:00:00Z,,1,1,1,perhaps\n", "x2,p1,g1,2024-05-01 18:00:00,,1,1,1,true\n"]
    path = sessions_csv(tmp_path, *good, *bad)
    error = error_of(lambda: load_file(path, "sessions"))
    assert (error.row, error.field) == (991, "bonus")
    assert "(1 more bad value in this input)" in error.message


def test_missing_required_column(tmp_path):
    path = write(tmp_path, "sessions.csv", "session_id,player_id,slot_id\ns1,p1,g1\n")
    error = error_of(lambda: load_file(path, "sessions"))
    assert (error.row, error.field) == (None, "started_at")
    assert "required column is missing" in error.message


def test_unknown_column_is_refused(tmp_path):
    path = write(tmp_path, "players.csv", "player_id,risk_flagg\np1,true\n")
    error = error_of(lambda: load_file(path, "players"))
    assert error.field == "risk_flagg"
    assert "unknown column" in error.message


def test_wrong_number_of_fields_names_the_line(tmp_path):
    path = sessions_csv(tmp_path, GOOD_SESSION, "s2,p1\n")
    error = error_of(lambda: load_file(path, "sessions"))
    assert error.row == 2
    assert "line 3 has 2 fields, the header has 9" in error.message


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.csv", None, "no such file"),
        ("sessions.xlsx", "x", "unknown file type"),
        ("empty.csv", "", "the file is empty"),
        ("header.csv", SESSIONS_HEADER, "no data rows"),
        ("broken.parquet", "not parquet", "not a valid Parquet file"),
    ],
)
def test_unreadable_files(tmp_path, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    error = error_of(lambda: load_file(path, "sessions"))
    assert error.source == str(path)
    assert needle in error.message


def test_read_file_does_not_check_values(tmp_path):
    path = sessions_csv(tmp_path, "s1,p1,g1,yesterday,,x,y,z,maybe\n")
    raw = read_file(path, "sessions")
    assert raw["started_at"].tolist() == ["yesterday"]


def test_validation_is_vectorized_on_a_large_frame():
    n = 200_000
    ids = np.char.add("s", np.arange(n).astype(str))
    frame = pd.DataFrame(
        {
            "session_id": ids,
            "player_id": "p1",
            "slot_id": "g1",
            "started_at": "2024-05-01T18:00:00Z",
            "spins": "10",
        }
    )
    frame.loc[n - 1, "spins"] = "-1"
    error = error_of(lambda: validate_frame(frame, "sessions", "big"))
    assert (error.row, error.field) == (n, "spins")


@pytest.mark.parametrize(("row", "field"), [
    ("s1,p1,g1,1999-12-31T23:00:00Z,,1,1,0,false\n", "started_at"),
    ("s1,p1,g1,2099-01-01T00:00:00Z,,1,1,0,false\n", "started_at"),
    ("s1,p1,g1,0001-01-01T00:00:00Z,,1,1,0,false\n", "started_at"),
    ("s1,p1,g1,2024-05-01T18:00:00Z,9999-12-31T23:59:59Z,1,1,0,false\n", "ended_at"),
])
def test_session_times_outside_the_accepted_range_are_refused(tmp_path, row, field):
    error = error_of(lambda: load_file(sessions_csv(tmp_path, GOOD_SESSION.replace("s1,", "s0,"), row), "sessions"))
    assert (error.row, error.field) == (2, field)
    assert "outside the accepted" in error.message


def test_other_timestamps_stay_within_a_representable_range():
    error = error_of(lambda: validate_records(
        [{"player_id": "p1"}, {"player_id": "p2", "self_excluded_until": "0001-01-01T00:00:00+01:00"}], "players"
    ))
    assert (error.row, error.field) == (2, "self_excluded_until")
    frame = validate_records([{"player_id": "p1", "self_excluded_until": "2999-01-01T00:00:00Z"}], "players")
    assert frame["self_excluded_until"][0] == pd.Timestamp("2999-01-01T00:00:00Z")


def test_a_huge_amount_is_refused_without_a_numpy_overflow_warning():
    import warnings

    record = {"slot_id": "x", "name": "N", "provider": "p", "theme": "t", "volatility": "low", "rtp": 96,
              "min_bet": 0.1, "max_bet": 1e308}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # schemathesis sent such values: numpy warned "overflow in multiply"
        error = error_of(lambda: validate_records([record], "slots"))
    assert (error.row, error.field) == (1, "max_bet") and "too large" in error.message
