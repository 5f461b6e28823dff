"""``gsomia node serve --tls-cert --tls-key``: the node answers HTTPS only, its dashboard's session
cookie is Secure, and a missing, partial or mismatched pair is refused before serving (exit 2,
naming what is wrong, no traceback)."""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.identity_docs import claims
from tests.node_fixtures import add
from tests.reliability.processes import serve, stop

from gsomia._web import dashboard_scope
from gsomia.demo.network import NetNode, free_port
from gsomia.node import Node, init_node_dir, load_config, set_tls


def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _serve(directory: Path, port: int, cert: Path, *tls: str) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` over HTTPS with ``cert``, answering when this returns."""
    member = NetNode("JPN", directory, port, tls=True)
    return serve(member, extra=tls, verify=ssl.create_default_context(cafile=str(cert)))


def test_the_node_serves_https_and_its_session_cookie_is_secure(tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}"
    config = init_node_dir(tmp_path / "jpn", "JPN", endpoint=endpoint)
    node = Node(config)
    add(node, "tanaka", "JPN", "極秘", ["dprk-missile"], ["analyst"])
    token = node.credentials.issue(None, "tanaka")[1]
    base = dashboard_scope(node.ring).path
    node.close()
    cert, key = _pair(tmp_path, "node")
    process = _serve(config.directory, port, cert, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            assert client.get(f"{endpoint}/healthz").json()["party"] == "JPN"
            login = client.post(
                f"{endpoint}{base}/login",
                data={"token": token, "next": f"{base}/agreements"},
                headers={"Origin": endpoint},
            )
        assert login.status_code == 303, login.text
        cookie = login.headers["set-cookie"].lower()
        assert "secure" in cookie
        assert "httponly" in cookie
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the same port: no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        stop(process)


@pytest.mark.parametrize("case", ["cert-only", "missing", "mismatched", "not-pem"])
def test_a_bad_tls_pair_is_refused_before_serving(tmp_path: Path, case: str) -> None:
    config = init_node_dir(tmp_path / "jpn", "JPN")
    cert, key = _pair(tmp_path, "node")
    _, other_key = _pair(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate", encoding="utf-8")
    args = {
        "cert-only": ["--tls-cert", str(cert)],
        "missing": ["--tls-cert", str(tmp_path / "absent.crt"), "--tls-key", str(key)],
        "mismatched": ["--tls-cert", str(cert), "--tls-key", str(other_key)],
        "not-pem": ["--tls-cert", str(junk), "--tls-key", str(key)],
    }[case]
    refused = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(config.directory), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert (
        "together" if case == "cert-only" else "absent.crt" if case == "missing" else "PEM"
    ) in refused.stderr


def test_node_toml_tls_files_that_cannot_serve_are_refused_before_serving(tmp_path: Path) -> None:
    config = init_node_dir(tmp_path / "jpn", "JPN")
    cert, key = _pair(tmp_path, "node")
    set_tls(config.directory, str(cert), str(key), str(tmp_path / "absent-ca.crt"))
    refused = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(config.directory)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "absent-ca.crt: no such TLS file" in refused.stderr
    both = subprocess.run(  # noqa: S603 - node.toml's files and --tls-cert: one or the other
        [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(config.directory),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert both.returncode == 2
    assert "serve without --tls-cert" in both.stderr


def test_node_tls_names_checked_files_and_the_identity_publishes_the_pin(tmp_path: Path) -> None:
    config = init_node_dir(tmp_path / "kor", "KOR", endpoint="https://127.0.0.1:9443")
    cert, key = _pair(tmp_path, "node")
    _, other_key = _pair(tmp_path, "other")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "gsomia", "node", *args, "--dir", str(config.directory)],
            capture_output=True,
            text=True,
            timeout=600,
        )

    mismatched = cli("tls", "--cert", str(cert), "--key", str(other_key), "--ca", str(cert))
    assert mismatched.returncode == 2
    assert "not a PEM certificate and its private key" in mismatched.stderr
    assert load_config(config.directory).tls is None  # nothing written
    assert cli("tls", "--cert", str(cert)).returncode == 2
    named = cli("tls", "--cert", str(cert), "--key", str(key), "--ca", str(cert), "--json")
    assert named.returncode == 0, named.stderr
    pin = json.loads(named.stdout)["pin"]
    tls = load_config(config.directory).tls
    assert tls is not None
    assert tls.pin() == pin
    identity = cli("identity")
    assert claims(json.loads(identity.stdout))["tls"] == [pin]
    assert cli("tls", "--plain").returncode == 0
    assert "tls" not in claims(json.loads(cli("identity").stdout))
