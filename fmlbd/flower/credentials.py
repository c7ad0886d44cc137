"""TLS certificates and SuperNode keys for a class: ``python -m fmlbd.flower.credentials``.

    python -m fmlbd.flower.credentials --out class-keys --host instructor.example.org --nodes 30

writes into ``--out``:

- ``ca.crt`` / ``ca.key``: the class's own certificate authority (keep ``ca.key`` private);
- ``server.crt`` / ``server.key``: the SuperLink's certificate for ``--host`` (and localhost),
  signed by that CA: the SuperLink serves TLS with it, clients check it against ``ca.crt``;
- ``node-N`` / ``node-N.pub`` for N = 0..nodes-1: one EC P-384 key pair per SuperNode (OpenSSH
  format). The instructor registers each ``.pub`` with the SuperLink (``flwr supernode register``)
  and hands ``node-N`` and ``ca.crt`` to learner N: a SuperNode without a registered key is refused.

Private keys are written with mode 0600 from their first byte, into a folder of mode 0700. An
existing CA is never replaced without ``--force`` (a new CA locks out every SuperNode that holds the
old ``ca.crt``).
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a DNS name (labels of letters, digits and inner hyphens)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if len(host) > 253 or not _HOST.fullmatch(host):
        raise ValueError(f"--host {host!r} is neither a host name nor an IP address: give the name or address "
                         f"learners reach the instructor's machine by, e.g. --host instructor.example.org")
    return host


def _create(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path``, a file created anew with ``mode`` (no moment with wider permissions)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


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


def make_credentials(out: Path, hosts: list[str], nodes: int, force: bool = False) -> dict[str, Path]:
    """Write the CA, the SuperLink's certificate for ``hosts`` and ``nodes`` SuperNode key pairs into
    ``out`` (created with mode 0700); returns the paths by name (``ca.crt``, ``server.crt``,
    ``server.key``, ``node-0``, ...). Refuses to replace an existing CA unless ``force``."""
    if not hosts:
        raise ValueError("give at least one --host: the name or address learners reach the instructor's machine by")
    hosts = [check_host(h) for h in hosts]
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 10_000:
        raise ValueError(f"--nodes must be an integer from 1 to 10000, not {nodes!r}")
    out = Path(out)
    if not force and ((out / "ca.key").exists() or (out / "ca.crt").exists()):
        raise FileExistsError(f"{out / 'ca.crt'} exists: a new CA would lock out every SuperNode given the old "
                              f"one; pass --force to replace it, or choose another --out")
    if not out.exists():
        out.mkdir(mode=0o700, parents=True)
    out.chmod(0o700)
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
        _create(path, data, 0o644 if name.endswith((".crt", ".pub")) else 0o600)
        paths[name] = path
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmlbd.flower.credentials", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--host", action="append", required=True,
                        help="the SuperLink machine's name or IP address as learners reach it (repeatable)")
    parser.add_argument("--nodes", type=int, default=4, help="SuperNode key pairs to make (default 4)")
    parser.add_argument("--force", action="store_true", help="replace the CA and keys already in --out")
    args = parser.parse_args(argv)
    try:
        paths = make_credentials(args.out, args.host, args.nodes, args.force)
    except (ValueError, FileExistsError, PermissionError) as err:
        parser.error(str(err))
    print(f"wrote {len(paths)} files to {args.out}: CA, SuperLink certificate for {', '.join(args.host)}, "
          f"{args.nodes} SuperNode key pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
