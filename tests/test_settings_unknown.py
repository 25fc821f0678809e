"""A ``RECSYS_*`` variable that is no setting is named at start, with the nearest setting (issue 23)."""

from __future__ import annotations

from recsys.cli import main
from recsys.settings import unknown_variables


def test_a_misspelled_setting_is_named_with_the_nearest_setting():
    environ = {"RECSYS_TRAIN_EPOCH": "3", "RECSYS_TRAIN_EPOCHS": "2", "RECSYS_API_KEY": "k", "HOME": "/root"}
    assert unknown_variables(environ) == ["RECSYS_TRAIN_EPOCH is not a setting; did you mean RECSYS_TRAIN_EPOCHS?"]


def test_a_name_far_from_every_setting_points_to_the_list():
    (line,) = unknown_variables({"RECSYS_COLOUR": "blue"})
    assert line.startswith("RECSYS_COLOUR is not a setting; ") and "did you mean" not in line


def test_the_cli_warns_on_stderr_and_goes_on(monkeypatch, capsys):
    url = "postgresql://postgres:@127.0.0.1:9/recsys"
    monkeypatch.setenv("RECSYS_DATABASE_URL", url)
    monkeypatch.setenv("RECSYS_SERVE_PROT", "9000")
    assert main(["db", "url"]) == 0
    out, err = capsys.readouterr()
    assert out == url + "\n"
    assert "RECSYS_SERVE_PROT is not a setting; did you mean RECSYS_SERVE_PORT?" in err
