"""The config's TLS and credential settings reach the NATS client: a real nats-server that requires TLS (a CA
and a server certificate made here) and a user, and a service that connects with what the config names."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import nats
import pytest
from beamflow.common.bus_auth import client_auth
from beamflow.common.config import NatsTls
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.testing import running, test_config
from beamflow.mover.service import build as build_mover
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.timeout(60)


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("beamflow test CA", ca_key, None, ca_key)
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


async def test_a_service_connects_over_tls_with_the_user_its_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_pki(tmp_path / "pki")
    args = ["--tls", "--tlscert", str(cert), "--tlskey", str(key), "--user", "mover", "--pass", "s3cret-mover"]
    monkeypatch.setenv("TEST_NATS_USER", "mover")
    monkeypatch.setenv("TEST_NATS_PASSWORD", "s3cret-mover")
    base = test_config(tmp_path)
    nats_settings = base.nats.model_copy(
        update={
            "tls": NatsTls(ca_file=ca),
            "user": SecretRef(env="TEST_NATS_USER"),
            "password": SecretRef(env="TEST_NATS_PASSWORD"),
        }
    )
    config = base.model_copy(update={"nats": nats_settings})
    auth = client_auth(config)
    server = EmbeddedNats(tmp_path / "tls-nats", extra_args=args, probe_auth=auth)
    await server.start()
    try:
        async with running(build_mover(config), config, server.url) as mover:
            assert mover.js is not None and (await mover.js.account_info()) is not None
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own or an ssl/OS error
            # Without the CA and the user the server refuses (a one-shot connect: services would retry forever).
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    finally:
        server.stop()


def test_credentials_files_and_nkey_seeds_are_handed_to_the_client(tmp_path: Path) -> None:
    base = test_config(tmp_path)
    creds = base.model_copy(update={"nats": base.nats.model_copy(update={"credentials_file": tmp_path / "x.creds"})})
    assert client_auth(creds) == {"user_credentials": str(tmp_path / "x.creds")}
    seeded = base.model_copy(update={"nats": base.nats.model_copy(update={"nkey_seed": SecretRef(env="TEST_SEED")})})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEST_SEED", "SUAexample")
        assert client_auth(seeded) == {"nkeys_seed_str": "SUAexample"}
