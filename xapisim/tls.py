"""Self-signed host certificates, one per host address as on real hosts, generated once
into the data dir so that their fingerprints stay the same across restarts."""

import datetime
import ipaddress
import os
import ssl

def load_or_create_certificate(data_dir: str, address: str) -> tuple[ssl.SSLContext, str]:
    """(server context, certificate PEM) of the host at ``address``."""
    cert_path = os.path.join(data_dir, "xapi-ssl-%s.pem" % address)
    key_path = os.path.join(data_dir, "xapi-ssl-%s.key" % address)
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        _create(cert_path, key_path, address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    with open(cert_path) as f:
        return context, f.read()


def _create(cert_path: str, key_path: str, address: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = x509.SubjectAlternativeName([x509.DNSName(address), x509.IPAddress(ipaddress.ip_address(address))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650)).add_extension(alt, critical=False)
            # Self-signed: clients (libnbd, requests) trust it by using it as their CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    tmp = key_path + ".tmp"
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp, key_path)
    with open(cert_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(cert_path + ".tmp", cert_path)
