"""Logging in to the broker: TLS files and credentials applied to a paho client, and every way a
connection can fail worded as one line for the user.

Shared by the daemon's connection (edgeemo.sinks.mqtt.client) and `edgeemo check`, so both say the same
thing about the same broker. A TLS file that is missing or not PEM is a ConfigError naming the key.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt

from edgeemo.config.schema import ConfigError, MqttConfig, TlsConfig
from edgeemo.config.secrets import mqtt_password

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
HOST_MISMATCH = {62, 64}
# The chain does not lead to a CA we trust: unknown issuer, self-signed, or no issuer at all.
UNTRUSTED = {2, 18, 19, 20, 21}
# CONNACK codes for a login refused (MQTT 3.1.1's 4 and 5 as paho maps them to MQTT 5's 134 and 135).
LOGIN_REFUSED = {134, 135}


def apply_login(client: mqtt.Client, cfg: MqttConfig, username: str | None) -> bool:
    """Set user name and password (from a file, a systemd credential or the environment).

    Returns whether a password was found but not used because mqtt.url has no `user@`.
    """
    password = mqtt_password(cfg)
    if username:
        client.username_pw_set(username, password)
        return False
    return bool(password)


def apply_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    """Verify the broker's certificate and host name (host name only, with `tls.insecure`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname, like paho's
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except ssl.SSLError as exc:  # before OSError, its base class
            raise ConfigError(f"mqtt.tls.ca_file: {tls.ca_file} is not a PEM certificate ({exc.reason or exc})") from None
        except OSError as exc:
            raise ConfigError(f"mqtt.tls.ca_file: cannot read {tls.ca_file}: {exc.strerror or exc}") from None
    else:
        context.load_default_certs()
    if tls.key_file is not None and tls.cert_file is None:
        raise ConfigError("mqtt.tls.key_file is set but mqtt.tls.cert_file is not")
    if tls.cert_file is not None:
        for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            if path is not None:
                _readable(key, path)
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.tls.cert_file/key_file: cannot load the client certificate {tls.cert_file} "
                              f"with key {tls.key_file or '(in cert_file)'}: {getattr(exc, 'reason', None) or exc}") from None
    client.tls_set_context(context)
    if tls.insecure:  # paho: check_hostname off; the certificate chain is still verified
        client.tls_insecure_set(True)


def _readable(key: str, path: Any) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"mqtt.tls.{key}: cannot read {path}: {exc.strerror or exc}") from None


def connect_error(exc: BaseException | None, host: str, port: int, tls: TlsConfig) -> str:
    """Why a connection attempt failed before MQTT's CONNACK, in one line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if exc.verify_code in HOST_MISMATCH:
            return (f"TLS: certificate does not match host {host} ({detail}); use the host name the "
                    f"certificate was made for in mqtt.url")
        if exc.verify_code in UNTRUSTED:
            return (f"TLS: the broker's certificate is not signed by mqtt.tls.ca_file "
                    f"({tls.ca_file or 'null: the system CAs'}): {detail}")
        return f"TLS: the broker's certificate at {host}:{port} was rejected: {detail}"
    if isinstance(exc, ssl.SSLError):
        hint = "; is this port a TLS listener?" if "WRONG_VERSION_NUMBER" in str(exc) else ""
        return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}{hint}"
    if isinstance(exc, OSError):
        return f"broker {host}:{port} not reachable: {exc.strerror or exc}"
    return f"broker {host}:{port} not reachable"


def refusal(reason: Any, host: str, port: int) -> str:
    """Why the broker answered CONNECT with a failure code, in one line."""
    if getattr(reason, "value", None) in LOGIN_REFUSED:
        return (f"broker {host}:{port} refused the login (bad user name or password): {reason}; "
                f"check the user@ of mqtt.url and the password (mqtt.password_file, mqtt_password credential, "
                f"or the variable named by mqtt.password_env)")
    return f"broker {host}:{port} refused the connection: {reason}"
