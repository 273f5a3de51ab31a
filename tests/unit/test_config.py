"""The config: defaults run offline, bad keys are named, overrides work, the hash is stable."""

import pytest

from tradeflow.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("TRADEFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text):
    path = tmp_path / "tradeflow.toml"
    path.write_text(text)
    return path


def test_the_builtin_default_is_three_offline_venues():
    settings = load_settings()
    assert [v.id for v in settings.venues] == ["sim-alpha", "sim-beta", "sim-gamma"]
    assert all(v.simulated for v in settings.venues)
    assert len(settings.ingest.symbols) >= 3 and settings.ingest.timeframes == ["1m", "1h"]


def test_the_shipped_file_is_valid_and_offline(monkeypatch):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "tradeflow.toml"
    settings = load_settings(shipped)
    assert all(v.simulated for v in settings.venues)


def test_an_unknown_key_is_named_with_a_suggestion(tmp_path):
    path = write(tmp_path, "[storage]\nurll = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "storage.urll: unknown key (did you mean 'url'?)" in message
    assert "allowed here:" in message and str(path) in message


def test_a_bad_value_names_the_key_and_what_is_allowed(tmp_path):
    path = write(
        tmp_path, "[ingest]\ntimeframes = ['1m', '7m']\n[[venues]]\nid = 'x'\nexchange = 'binanse'\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "ingest.timeframes: unknown timeframe '7m'; allowed: 1m" in message
    assert "venues[0].exchange: unknown ccxt exchange id 'binanse'; did you mean binance" in message


def test_a_simulated_venue_needs_simulated_symbols(tmp_path):
    path = write(tmp_path, "[ingest]\nsymbols = ['DOGE/USDT']\n")
    with pytest.raises(ConfigError, match="does not list DOGE/USDT; add them under"):
        load_settings(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[storage]\nurl = 'lake-a'\n")
    monkeypatch.setenv("TRADEFLOW_STORAGE__URL", "s3://bucket/lake")
    monkeypatch.setenv("TRADEFLOW_SIMULATOR__FAULT_PROFILE", "chaos")
    settings = load_settings(path)
    assert settings.storage.url == "s3://bucket/lake"
    assert settings.simulator.fault_profile == "chaos"


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_SIMULATOR__FAULT_PROFILE", "mayhem")
    with pytest.raises(ConfigError, match=r"simulator\.fault_profile: Input should be 'clean', 'chaos'"):
        load_settings()


def test_the_hash_is_stable_and_changes_with_the_config(tmp_path):
    first, second = load_settings(), load_settings()
    assert first.config_hash == second.config_hash and len(first.config_hash) == 64
    changed = load_settings(write(tmp_path, "[history]\ndays = 3\n"))
    assert changed.config_hash != first.config_hash


def test_the_config_is_frozen():
    settings = load_settings()
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        settings.history.days = 1  # type: ignore[misc]
