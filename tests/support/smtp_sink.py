#!/usr/bin/env python3
"""A tiny real SMTP server for procos's tests, on aiosmtpd (installed into target/test-python
by the script itself when the system Python lacks it).

    python3 smtp_sink.py --port 0 --dir /tmp/mail [--auth user:password]

Listens on 127.0.0.1 (port 0 picks a free one) and prints `listening on 127.0.0.1:<port>` once
it accepts connections. Each accepted message is written to the directory as `<n>.eml` (the raw
message as received) and then `<n>.json` (the envelope: `mail_from`, `rcpt_tos`, `login`); the
sidecar is renamed into place last, so a reader that sees it sees the whole message. Both are
written before the server answers the DATA command, so they exist when the client's send returns.

Recipients steer failures, for testing a client's error handling:
  tempfail@...  RCPT answered `451 4.3.0 Mailbox temporarily unavailable (tempfail)`
  reject@...    RCPT answered `550 5.1.1 <address>: Recipient address rejected (reject)`

With `--auth`, AUTH PLAIN/LOGIN is offered over plain text and only that user and password are
accepted (`535` otherwise); sending without AUTH is then refused.

Runs until killed.
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import warnings



def _bootstrap():
    """Without aiosmtpd, install it once into a venv under target/ and re-run from there, so
    that `cargo test` works on a fresh machine (concurrent starts wait on a file lock)."""
    import fcntl
    import subprocess
    from pathlib import Path

    venv = Path(__file__).resolve().parents[2] / "target" / "test-python"
    python = venv / "bin" / "python3"
    if Path(sys.executable).resolve() == python.resolve() if python.exists() else False:
        sys.exit("smtp_sink.py: aiosmtpd is missing even in " + str(venv))
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / ".aiosmtpd-installed"
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "aiosmtpd"], check=True, stdout=sys.stderr)
            ready.touch()
    os.execv(str(python), [str(python), __file__] + sys.argv[1:])


try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError:
    _bootstrap()


class Sink:
    """aiosmtpd handler: steers RCPT replies by local part, stores accepted messages."""

    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "tempfail":
            return "451 4.3.0 Mailbox temporarily unavailable (tempfail)"
        if local == "reject":
            return f"550 5.1.1 <{address}>: Recipient address rejected (reject)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        base = os.path.join(self.directory, str(n))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        # The authenticator below stores the accepted user name as the session's auth_data.
        login = session.auth_data if isinstance(session.auth_data, str) else None
        sidecar = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(sidecar, f)
        os.rename(base + ".json.tmp", base + ".json")
        return f"250 2.0.0 Ok: queued as {n}"


def authenticator(expected_user, expected_password):
    def check(server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password
        if isinstance(password, bytes):
            password = password.decode()
        ok = user == expected_user and password == expected_password
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return check


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--auth", help="user:password that AUTH must present")
    args = parser.parse_args()
    # Plain-text AUTH is the point of `--auth` here; keep aiosmtpd's warnings about it (and its
    # deprecation notices) out of the test output.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    os.makedirs(args.dir, exist_ok=True)
    handler = Sink(args.dir)
    options = {"hostname": "smtp-sink.test"}
    if args.auth:
        user, _, password = args.auth.partition(":")
        options.update(
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticator(user, password),
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, **options), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
