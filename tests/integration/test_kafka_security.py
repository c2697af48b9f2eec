"""Kafka authentication: one set of settings for every client (confluent-kafka and the Faust worker).

The production broker (docker-compose.yml) requires SASL/SCRAM. The embedded broker here can require
authentication but cannot store a SCRAM user, so the integration test checks the refusal: a client
with our settings performs the SCRAM exchange, is refused, and the command says so in one line and
exits non-zero instead of hanging or reporting success.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from intraday.app.services import EmbeddedBroker
from intraday.platform import kafka
from intraday.platform.config import ConfigError, KafkaSecurity, Settings
from intraday.processing.app import broker_credentials

SASL_ENV = {"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "KAFKA_SASL_USERNAME": "intraday",
            "KAFKA_SASL_PASSWORD": "s3cret-for-the-test"}


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol():
    sec = Settings.from_env({}).kafka_security
    assert sec == KafkaSecurity()
    assert sec.client_conf() == {"security.protocol": "PLAINTEXT"}
    assert broker_credentials(sec) is None


def test_scram_settings_reach_both_client_libraries_alike():
    sec = Settings.from_env(SASL_ENV).kafka_security
    assert sec.client_conf() == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                 "sasl.username": "intraday", "sasl.password": "s3cret-for-the-test"}
    auth = credentials_to_aiokafka_auth(broker_credentials(sec))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("intraday", "s3cret-for-the-test")
    assert auth["ssl_context"] is None


def test_sasl_over_tls_verifies_the_brokers_against_the_given_ca(tmp_path):
    import ssl

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # the settings check the file exists; the client reads it
    env = {**SASL_ENV, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "scram-sha-256",
           "KAFKA_SSL_CA_LOCATION": str(ca)}
    sec = Settings.from_env(env).kafka_security
    assert sec.client_conf()["ssl.ca.location"] == str(ca)
    assert sec.client_conf()["sasl.mechanism"] == "SCRAM-SHA-256"
    creds = broker_credentials(KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "intraday", "pw"))
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED and auth["ssl_context"].check_hostname


@pytest.mark.parametrize(("env", "names"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({**SASL_ENV, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS'"),
    ({**SASL_ENV, "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM='PLAIN'"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "is not a file"),
])
def test_an_incomplete_or_unknown_security_setting_is_a_configuration_error(env, names):
    with pytest.raises(ConfigError, match=names.replace("(", r"\(").replace("'", ".")):
        Settings.from_env(env)


def test_the_password_is_never_shown():
    settings = Settings.from_env(SASL_ENV)
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(settings.kafka_security)
    assert "s3cret" not in repr(broker_credentials(settings.kafka_security))


def test_every_confluent_client_of_the_process_uses_the_security_set_at_its_edge():
    before = kafka.security()
    try:
        kafka.use_security(Settings.from_env(SASL_ENV).kafka_security)
        conf = kafka.client_conf("broker:9092", **{"group.id": "g"})
        assert conf["security.protocol"] == "SASL_PLAINTEXT" and conf["sasl.username"] == "intraday"
        assert conf["group.id"] == "g" and conf["bootstrap.servers"] == "broker:9092"
    finally:
        kafka.use_security(before)
    assert kafka.client_conf("broker:9092")["security.protocol"] == "PLAINTEXT"


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory):
    broker = EmbeddedBroker(tmp_path_factory.mktemp("auth-broker"), args=("--authentication",)).start()
    yield broker
    broker.stop()


@pytest.mark.integration
@pytest.mark.parametrize("with_login", [True, False])
def test_a_broker_that_refuses_the_login_stops_the_command_with_a_one_line_reason(auth_broker, tmp_path,
                                                                                  with_login):
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": auth_broker.bootstrap,
           "INTRADAY_STATE_DIR": str(tmp_path), **(SASL_ENV if with_login else {})}
    res = subprocess.run([sys.executable, "-m", "intraday.app.cli", "topics"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("intraday:")]
    assert len(errors) == 1, res.stderr
    assert auth_broker.bootstrap in errors[0]
    if with_login:  # the SCRAM exchange took place and the broker's answer is named
        assert "refused the login 'intraday' (SASL_PLAINTEXT, SCRAM-SHA-512)" in errors[0]
        assert "unknown-user" in errors[0]
    else:
        assert "not reachable" in errors[0]
    assert "s3cret" not in res.stderr
