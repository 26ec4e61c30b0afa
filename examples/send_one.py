"""Send one text now and print what the provider said.

    SMSGATE_PROVIDER=twilio://SID:TOKEN@+15017122661 python examples/send_one.py +15555550100

Try it without an account against the Twilio emulator: run ``smsgate emulate twilio`` and use
the provider URL it prints.
"""

from __future__ import annotations

import sys

import smsgate


def main(to: str) -> int:
    gateway = smsgate.Gateway.from_env()  # SMSGATE_PROVIDER: one URL, or several for failover
    try:
        result = gateway.send(to, "Your code is 481902", purpose="otp")
    except smsgate.SmsgateError as exc:
        # every provider's errors map into one taxonomy: retryable? fail over? the raw answer
        print(f"not sent: {exc} (retryable: {exc.retryable})", file=sys.stderr)
        return 1
    finally:
        gateway.close()
    print(
        f"{result.id} {result.status.value} via {result.provider} as {result.provider_message_id}"
    )
    print(f"{result.segments} segment(s), {result.encoding}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "+15555550100"))
