"""Email-to-SMS through a carrier gateway, without an SMTP login per text.

    SMSGATE_PROVIDER='smtp://me%40gmail.com:APP_PASSWORD@smtp.gmail.com:587?from=me@gmail.com' \
        python examples/email_to_sms.py +15555550100 googlefi

Needs the [smtp] extra. Try it against the SMTP emulator: ``smsgate emulate smtp`` prints a
provider URL. The carrier registry knows each gateway's domain and which ones are closed.
"""

from __future__ import annotations

import sys

import smsgate


def main(to: str, carrier: str) -> int:
    with smsgate.Gateway.from_env() as gateway:
        try:
            result = gateway.send(
                to, "Hello from smsgate over SMTP", provider_options={"smtp": {"carrier": carrier}}
            )
        except smsgate.SmsgateError as exc:
            # e.g. a carrier whose gateway closed: smsgate says so instead of mailing into a void
            print(f"not sent: {exc}", file=sys.stderr)
            return 1
    print(f"{result.id} {result.status.value} via {result.provider}: {result.provider_message_id}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:] or ["+15555550100", "googlefi"]
    raise SystemExit(main(args[0], args[1]))
