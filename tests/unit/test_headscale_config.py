"""The embedded Headscale's config (timemachine/headscale/config.py) per TLS and relay mode; the
tailnet tier runs `headscale configtest` on each (tests/tailnet/test_headscale_config.py)."""

from __future__ import annotations

import yaml

from timemachine.headscale.config import PUBLIC_DERP_MAP, TLS_CERT_PATH, TLS_KEY_PATH, render_headscale_config, tls_mode


def rendered(url: str, **options) -> dict:
    return yaml.safe_load(render_headscale_config(url, **options))


def test_internal_tls_serves_the_stacks_files_and_the_relay_behind_it():
    config = rendered("https://headscale.internal:8080", tls="internal")
    assert config["tls_cert_path"] == TLS_CERT_PATH and config["tls_key_path"] == TLS_KEY_PATH
    assert "tls_letsencrypt_hostname" not in config
    derp = config["derp"]
    assert derp["server"]["enabled"] and derp["urls"] == [] and not derp["auto_update_enabled"]
    assert "ipv4" not in derp["server"], "a name: clients resolve it and check the certificate against it"


def test_acme_asks_lets_encrypt_for_the_public_name_on_its_own_listener():
    config = rendered("https://hs.example.com", tls="acme", acme_email="ops@example.com")
    assert config["tls_letsencrypt_hostname"] == "hs.example.com"
    assert config["tls_letsencrypt_challenge_type"] == "TLS-ALPN-01" and config["acme_email"] == "ops@example.com"
    assert "tls_cert_path" not in config


def test_the_public_relay_map_replaces_the_embedded_relay():
    derp = rendered("https://hs.example.com", tls="acme", derp="public")["derp"]
    assert derp["urls"] == [PUBLIC_DERP_MAP] and derp["auto_update_enabled"]
    assert not derp["server"]["enabled"] and not derp["server"]["automatically_add_embedded_derp_region"]


def test_plain_http_has_no_tls_and_an_address_literal_relay():
    assert tls_mode("http://127.0.0.1:8080", "internal") == "none"
    assert tls_mode("https://hs.internal", "acme") == "acme"
    config = rendered("http://127.0.0.1:8080")
    assert not {"tls_cert_path", "tls_letsencrypt_hostname"} & set(config)
    assert config["derp"]["server"]["ipv4"] == "127.0.0.1"
