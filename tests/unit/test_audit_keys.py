"""Where the checkpoint signing key comes from, and the errors when it cannot be had."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tradeflow.audit.signing import SigningKeyError, key_id, private_key_text
from tradeflow.bootstrap import audit_signing_key, local_signing_key_path, trusted_public_keys
from tradeflow.config import ConfigError, load_settings


def settings(tmp_path, **audit):
    return load_settings(None, data_dir=tmp_path / "data", audit=audit)


def test_production_mode_without_a_key_is_an_error_that_says_where_to_put_one(tmp_path):
    with pytest.raises(SigningKeyError) as error:
        audit_signing_key(settings(tmp_path, mode="production"))
    message = str(error.value)
    assert "$TRADEFLOW_AUDIT_SIGNING_KEY" in message and "audit.signing_key_block" in message
    assert "tradeflow audit keygen" in message
    assert not local_signing_key_path(settings(tmp_path)).exists()  # no key was generated


def test_the_embedded_default_generates_a_private_local_key_once_and_trusts_it(tmp_path):
    config = settings(tmp_path)
    first = audit_signing_key(config)
    path = local_signing_key_path(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = audit_signing_key(config)
    assert key_id(first.public_key()) == key_id(again.public_key())
    assert key_id(first.public_key()) in trusted_public_keys(config)


def test_a_key_from_the_environment_wins_and_is_trusted(tmp_path, monkeypatch):
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("TRADEFLOW_AUDIT_SIGNING_KEY", private_key_text(key))
    config = settings(tmp_path, mode="production")
    assert key_id(audit_signing_key(config).public_key()) == key_id(key.public_key())
    assert set(trusted_public_keys(config)) == {key_id(key.public_key())}
    assert not local_signing_key_path(config).exists()


def test_an_unreadable_key_names_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEFLOW_AUDIT_SIGNING_KEY", "not-a-key")
    with pytest.raises(SigningKeyError, match=r"\$TRADEFLOW_AUDIT_SIGNING_KEY: not an Ed25519 private key"):
        audit_signing_key(settings(tmp_path))
    monkeypatch.delenv("TRADEFLOW_AUDIT_SIGNING_KEY")
    with pytest.raises(SigningKeyError, match=r"audit.public_keys\[0\]"):
        trusted_public_keys(settings(tmp_path, public_keys=["AAAA"]))


def test_an_unknown_audit_key_in_the_config_is_named(tmp_path):
    path = tmp_path / "tradeflow.toml"
    path.write_text("[audit]\ncheckpoint_evry = 10\n")
    with pytest.raises(
        ConfigError, match=r"audit.checkpoint_evry: unknown key \(did you mean 'checkpoint_every'\?\)"
    ):
        load_settings(path)
