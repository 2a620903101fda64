"""The broker's listeners for a security mode, and what a client needs to reach them.

Pure except `write_client_config`, which writes the two client files into the run dir.
"""

from __future__ import annotations

import json
from pathlib import Path

from devtools.kafka_local.certificates import private
from devtools.kafka_local.layout import HOST
from devtools.kafka_local.scram import MECHANISM, USER

SECURITY_MODES = ("plaintext", "sasl_ssl", "mtls")
PROTOCOLS = {"plaintext": "PLAINTEXT", "sasl_ssl": "SASL_SSL", "mtls": "SSL"}


def tls_dir(home: Path) -> Path:
    return home / "tls"


def client_protocol(security: str) -> str:
    return PROTOCOLS[security]


def listener_settings(security: str, port: int, internal_port: int, tls: Path) -> dict[str, str]:
    """The template's listener lines and security block for this mode.

    Secured, the client listener is SASL_SSL or SSL and an INTERNAL plaintext listener on
    loopback carries inter-broker traffic and the readiness probe.
    """
    if security == "plaintext":
        return {
            "listeners": f"PLAINTEXT://{HOST}:{port}",
            "protocol_map": "PLAINTEXT:PLAINTEXT",
            "inter_broker_listener": "PLAINTEXT",
            "security": "",
        }
    protocol = client_protocol(security)
    lines = [
        "# Added by kafka-local start --security " + security,
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls / 'broker.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls / 'ca.crt'}",
    ]
    if security == "sasl_ssl":
        lines += [
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]
    else:
        lines.append("listener.name.ssl.ssl.client.auth=required")
    return {
        "listeners": f"{protocol}://{HOST}:{port},INTERNAL://{HOST}:{internal_port}",
        "protocol_map": f"{protocol}:{protocol},INTERNAL:PLAINTEXT",
        "inter_broker_listener": "INTERNAL",
        "security": "\n".join(lines) + "\n",
    }


def client_settings(
    security: str, bootstrap: str, password: str, tls: Path
) -> tuple[dict[str, str], list[str]]:
    """`client.json` (named as sla-worker's settings) and `client.properties` lines (Java
    clients, e.g. kafka-console-consumer --consumer.config)."""
    protocol = client_protocol(security)
    client: dict[str, str] = {"bootstrap_servers": bootstrap, "security_protocol": protocol}
    java = [f"bootstrap.servers={bootstrap}", f"security.protocol={protocol}"]
    if security != "plaintext":
        client["ssl_cafile"] = str(tls / "ca.crt")
        java += ["ssl.truststore.type=PEM", f"ssl.truststore.location={tls / 'ca.crt'}"]
    if security == "sasl_ssl":
        client.update(sasl_mechanism=MECHANISM, sasl_username=USER, sasl_password=password)
        java += [
            f"sasl.mechanism={MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="{USER}" password="{password}";',
        ]
    if security == "mtls":
        client.update(ssl_certfile=str(tls / "client.crt"), ssl_keyfile=str(tls / "client.key"))
        java += ["ssl.keystore.type=PEM", f"ssl.keystore.location={tls / 'client.pem'}"]
    return client, java


def write_client_config(home: Path, security: str, bootstrap: str, password: str) -> None:
    client, java = client_settings(security, bootstrap, password, tls_dir(home))
    private(home / "client.json").write_text(json.dumps(client, indent=1) + "\n")
    private(home / "client.properties").write_text("\n".join(java) + "\n")
