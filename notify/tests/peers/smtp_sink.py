#!/usr/bin/env python3
"""A real SMTP server for Varde's notification tests: aiosmtpd on loopback.

Each accepted message is written to DIR/NNNN.eml (the bytes received) and DIR/NNNN.json
(envelope sender and recipients). Modes:
  --tls none|starttls|implicit   (starttls: STARTTLS required before MAIL; implicit: TLS from
                                  the first byte), with --cert/--key
  --auth USER:PASS               AUTH PLAIN/LOGIN required
  --defer N                      answer the first N messages with 451 (a transient refusal)
  --reject                       answer every recipient with 550 (a permanent refusal)
  --delay S                      take S seconds over each message (a slow server)
Prints "ready" on standard output when it listens; runs until killed.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory, defer, reject, delay=0.0):
        self.delay = delay
        self.directory = directory
        self.defer = defer
        self.reject = reject
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 try again later"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        base = os.path.join(self.directory, "%04d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                       "tls": session.ssl is not None,
                       "auth": session.authenticated}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", default="none", choices=["none", "starttls", "implicit"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--defer", type=int, default=0)
    p.add_argument("--reject", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()

    kwargs = {}
    ctx = None
    if a.tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    if a.tls == "starttls":
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = True
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            return AuthResult(success=ok)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # Implicit TLS is TLS too; aiosmtpd only knows STARTTLS, so allow AUTH there.
        kwargs["auth_require_tls"] = a.tls == "starttls"
    controller = Controller(
        Sink(a.dir, a.defer, a.reject, a.delay),
        hostname="127.0.0.1",
        port=a.port,
        ssl_context=ctx if a.tls == "implicit" else None,
        server_hostname="localhost",
        **kwargs,
    )
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
