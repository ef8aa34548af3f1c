"""The settings object read from OPENAUTOGLM_* variables: types, defaults, and what a typo says."""

from __future__ import annotations

import pytest

from openautoglm import config


def test_values_are_read_when_settings_are_made_not_at_import(monkeypatch):
    monkeypatch.setenv("OPENAUTOGLM_OPERATOR_WORKERS", "7")
    monkeypatch.setenv("OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS", "0.25")
    monkeypatch.setenv("OPENAUTOGLM_LEADER_ELECTION", "Yes")
    cfg = config.load()
    assert (cfg.operator_workers, cfg.scrape_deadline_seconds, cfg.leader_election) == (7, 0.25, True)
    monkeypatch.delenv("OPENAUTOGLM_OPERATOR_WORKERS")
    assert config.load().operator_workers == 4


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("OPENAUTOGLM_OPERATOR_WORKERS", "four", "OPENAUTOGLM_OPERATOR_WORKERS='four': not an integer"),
        ("OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS", "2s", "OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS='2s': not a number"),
    ],
)
def test_a_malformed_number_names_its_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as err:
        config.load()
    assert str(err.value) == says


def test_a_flag_is_off_unless_it_says_on(monkeypatch):
    for text, on in [("on", True), ("TRUE", True), ("1", True), ("off", False), ("no", False), ("", False)]:
        monkeypatch.setenv("OPENAUTOGLM_TRIAL_NETWORK_POLICY", text)
        assert config.load().trial_network_policy is on, text
