"""TLS certificates and SuperNode keys for a class: ``python -m fmlbd.flower.credentials``.

    python -m fmlbd.flower.credentials --out class-keys --host instructor.example.org --nodes 30

writes into ``--out``:

- ``ca.crt`` / ``ca.key``: the class's own certificate authority (keep ``ca.key`` private);
- ``server.crt`` / ``server.key``: the SuperLink's certificate for ``--host`` (and localhost),
  signed by that CA: the SuperLink serves TLS with it, clients check it against ``ca.crt``;
- ``node-N`` / ``node-N.pub`` for N = 0..nodes-1: one EC P-384 key pair per SuperNode (OpenSSH
  format). The instructor registers each ``.pub`` with the SuperLink (``flwr supernode register``)
  and hands ``node-N`` and ``ca.crt`` to learner N: a SuperNode without a registered key is refused.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key, issuer: str, issuer_key, ca: bool, hosts: list[str]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def make_credentials(out: Path, hosts: list[str], nodes: int) -> dict[str, Path]:
    """Write the CA, the SuperLink's certificate for ``hosts`` and ``nodes`` SuperNode key pairs into
    ``out``; returns the paths by name (``ca.crt``, ``server.crt``, ``server.key``, ``node-0``, ...)."""
    if nodes < 1:
        raise ValueError(f"--nodes must be >= 1, not {nodes}")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    ca_key, server_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca = _certificate("fmlbd class CA", ca_key, "fmlbd class CA", ca_key, True, [])
    server = _certificate(hosts[0], server_key, "fmlbd class CA", ca_key, False, [*hosts, "localhost", "127.0.0.1"])
    files |= {"ca.key": _pem_key(ca_key), "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
              "server.key": _pem_key(server_key), "server.crt": server.public_bytes(serialization.Encoding.PEM)}
    for n in range(nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        files[f"node-{n}"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption())
        files[f"node-{n}.pub"] = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                               serialization.PublicFormat.OpenSSH)
    paths = {}
    for name, data in files.items():
        path = out / name
        path.write_bytes(data)
        path.chmod(0o600 if not name.endswith((".crt", ".pub")) else 0o644)
        paths[name] = path
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmlbd.flower.credentials", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--host", action="append", required=True,
                        help="the SuperLink machine's name or IP address as learners reach it (repeatable)")
    parser.add_argument("--nodes", type=int, default=4, help="SuperNode key pairs to make (default 4)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error(f"--nodes must be >= 1, not {args.nodes}")
    paths = make_credentials(args.out, args.host, args.nodes)
    print(f"wrote {len(paths)} files to {args.out}: CA, SuperLink certificate for {', '.join(args.host)}, "
          f"{args.nodes} SuperNode key pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
