"""Send one text to many recipients: results in input order, and a bad number never raises.

    SMSGATE_PROVIDER=twilio://SID:TOKEN@+15017122661 python examples/send_many.py

The seed tutorials loop over numbers with a thread pool and a try/except per send; here the
gateway batches where the provider has a bulk endpoint and reports each recipient's outcome.
"""

from __future__ import annotations

import smsgate

NUMBERS = ["+15555550100", "(555) 555-0101", "not-a-number", "+15005550001"]


def main() -> int:
    # national numbers are read in the default region; "+15005550001" is Twilio's test number
    # for an invalid recipient, which the emulator answers as Twilio does
    with smsgate.Gateway.from_env(default_region="US") as gateway:
        results = gateway.send_many(NUMBERS, body="Your order has shipped.")
    for number, result in zip(NUMBERS, results, strict=True):
        outcome = "ok" if result.ok else f"refused: {result.error}"
        print(f"{number:>16} -> {result.to:<16} {result.status.value:<9} {outcome}")
    sent = sum(result.ok for result in results)
    print(f"{sent} of {len(results)} accepted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
