"""The classroom's front door: a TLS proxy that lets SuperNodes reach the SuperLink's Fleet API and
nothing else, so runs can be submitted only on the instructor's machine.

Flower 1.42 serves its Fleet API (SuperNodes), Control API (``flwr run``, ``flwr ls``, ...) and
Runtime API on one port, and its open-source SuperLink authenticates no Control API user: anyone
who can reach that port with the class's ``ca.crt`` (every learner) could submit a run, whose
ServerApp then executes on the instructor's machine. So the SuperLink listens on 127.0.0.1 only, and
this gate listens where learners connect: it forwards requests under ``/v1/fleet/`` to the SuperLink
(node authentication headers pass unchanged) and answers every other path with 403.

    python -m fmlbd.flower.gate --listen 0.0.0.0:9092 --superlink 127.0.0.1:9093 --keys class-keys

``--keys``: the folder of :mod:`fmlbd.flower.credentials` (``server.crt`` / ``server.key`` for TLS
towards learners, ``ca.crt`` to check the SuperLink's certificate).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

#: the only path prefix forwarded: the Fleet API, which SuperNodes use
ALLOWED = "/v1/fleet/"
#: headers that belong to one connection, not to the request (RFC 9110, 7.6.1) or that httpx sets
_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"content-length"}


class FleetGate:
    """ASGI app: forwards ``/v1/fleet/...`` to ``upstream`` (``https://127.0.0.1:PORT``), refuses the rest."""

    def __init__(self, upstream: str, ca: Path, log=lambda line: print(line, file=sys.stderr, flush=True)):
        self.upstream, self.ca, self.log = upstream.rstrip("/"), ca, log
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    self.client = httpx.AsyncClient(verify=str(self.ca), timeout=None)
                    await send({"type": "lifespan.startup.complete"})
            if self.client is not None:
                await self.client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if not path.startswith(ALLOWED):
            client = (scope.get("client") or ("?",))[0]
            self.log(f"gate: refused {scope['method']} {path} from {client}: only the Fleet API is served here")
            await _respond(send, 403, b"only SuperNodes' Fleet API is served here: runs are submitted on the "
                                      b"instructor's machine\n", [(b"content-type", b"text/plain")])
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = self.upstream + path + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        try:
            reply = await self.client.request(scope["method"], url, headers=headers, content=body)
        except httpx.HTTPError as err:
            await _respond(send, 502, f"the SuperLink did not answer: {err}\n".encode(), [])
            return
        await _respond(send, reply.status_code, reply.content,
                       [(k, v) for k, v in reply.headers.raw if k.lower() not in _HOP])


async def _respond(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _address(text: str, flag: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"{flag} {text!r}: give HOST:PORT, e.g. {flag} 127.0.0.1:9093")
    return host, int(port)


def main(argv=None) -> None:
    import uvicorn  # Flower's own server: installed with the extra
    parser = argparse.ArgumentParser(prog="python -m fmlbd.flower.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT learners' SuperNodes connect to")
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink (127.0.0.1:...)")
    parser.add_argument("--keys", type=Path, required=True, help="folder with ca.crt, server.crt, server.key")
    args = parser.parse_args(argv)
    host, port = _address(args.listen, "--listen")
    link_host, link_port = _address(args.superlink, "--superlink")
    missing = [n for n in ("ca.crt", "server.crt", "server.key") if not (args.keys / n).is_file()]
    if missing:
        parser.error(f"--keys {args.keys} lacks {', '.join(missing)}: write it with python -m fmlbd.flower.credentials")
    gate = FleetGate(f"https://{link_host}:{link_port}", args.keys / "ca.crt")
    uvicorn.run(gate, host=host, port=port, ssl_certfile=str(args.keys / "server.crt"),
                ssl_keyfile=str(args.keys / "server.key"), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
