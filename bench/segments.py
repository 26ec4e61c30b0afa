"""How many ``smsgate.segments()`` analyses per second, against the seed tutorial's counter.

Run: ``python bench/segments.py [--seconds 0.5] [--rounds 5]``. Every call gets a slightly
different text (64 variants per case, cycled) so nothing can be answered from a cache; each
measurement is bounded both in calls and in time. The figure reported is the best round (the one
least disturbed by other work on the machine), with the median beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from smsgate.encoding import segments

# --- the seed tutorial's counter (our own seed), as the baseline ------------------------------
# The set is copied verbatim, including its flaw: where the alphabet has "Ü§" the seed has one
# character, U+0727, so it counts Ü and § as UCS-2. No benchmark text contains either.
GSM7_CHARS = set('@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑܧ¿abcdefghijklmnopqrstuvwxyzäöñüà')  # fmt: skip


def is_gsm7(text):  # type: ignore[no-untyped-def]
    return all(c in GSM7_CHARS for c in text)


def sms_parts(text):  # type: ignore[no-untyped-def]
    if is_gsm7(text):
        return 1 if len(text) <= 160 else -(-len(text) // 153)
    else:
        return 1 if len(text) <= 70 else -(-len(text) // 67)


# -------------------------------------------------------------------------------------------------

VARIANTS = 64
MAX_CALLS = 5_000_000  # per round, whatever the clock says
TARGET_GSM7_PER_SECOND = 300_000


def _fit(text: str, length: int) -> str:
    return (text * (length // len(text) + 1))[:length]


def _variants(template: str) -> list[str]:
    """Same length and character mix, a different order number in each."""
    return [template.replace("#####", f"{48213 + i:05d}") for i in range(VARIANTS)]


GSM7_160 = _fit(
    "Hi Anna, your order ##### has shipped and will arrive on Tuesday between 9am and 1pm. "
    "Track it at example.com/t/##### or reply HELP. Reply STOP to opt out. ",
    160,
)
MIXED_400 = _fit(
    "Bonjour Zoé! Votre commande ##### est expédiée et arrivera mardi avant midi. "
    "Coût de livraison offert, total 42,50 EUR. Suivi: example.com/t/##### . ",
    400,
).replace("û", "u")
MIXED_400 = MIXED_400[:200] + "🚚" + MIXED_400[201:]  # one emoji, in the middle
UCS2_1000 = _fit(
    "Здравствуйте, Анна! Ваш заказ ##### отправлен и будет доставлен во вторник до обеда. "
    "Курьер позвонит за час до приезда; если вас не будет дома, он оставит извещение. "
    "Отследить посылку можно по ссылке example.com/t/#####. Оплата при получении картой "
    "или наличными. Вопросы? Напишите нам в чат поддержки, мы отвечаем круглосуточно. "
    "Спасибо, что выбрали наш магазин, и хорошего дня! Ваш номер клиента: #####. "
    "Чтобы отписаться от уведомлений, ответьте СТОП. Бонусы за покупку уже начислены. "
    "Следующая скидка ждёт вас в личном кабинете: загляните туда до конца месяца. ",
    1000,
)
GSM7_EXT_160 = _fit("Total [order #####]: 42 € {paid} ~ ref ^##### | see \\help. ", 160)

CASES = [
    ("160-char GSM-7", GSM7_160),
    ("400-char mixed, one emoji", MIXED_400),
    ("1,000-char UCS-2 (Cyrillic)", UCS2_1000),
    ("160-char GSM-7 with extension chars", GSM7_EXT_160),
]


class Rates:
    """Best and median calls per second over the rounds, by CPU time and by wall clock."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def best(self) -> tuple[float, float]:
        return max(self.cpu), max(self.wall)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def _round(fn: Callable[[str], object], texts: list[str], seconds: float, rates: Rates) -> None:
    """One round: at most MAX_CALLS calls or about ``seconds`` of wall time."""
    calls = 0
    wall, cpu = time.perf_counter, time.process_time
    wall_start, cpu_start = wall(), cpu()
    deadline = wall_start + seconds
    while calls < MAX_CALLS:
        for text in texts:
            fn(text)
        calls += len(texts)
        if wall() >= deadline:
            break
    rates.cpu.append(calls / (cpu() - cpu_start))
    rates.wall.append(calls / (wall() - wall_start))


def _measure(
    functions: list[Callable[[str], object]], texts: list[str], seconds: float, rounds: int
) -> list[Rates]:
    """Rates for each function, rounds interleaved so a burst of load elsewhere hits all alike."""
    for fn in functions:
        for text in texts[:8]:  # warm-up: first-call costs are not what we measure
            fn(text)
    rates = [Rates() for _ in functions]
    for _ in range(rounds):
        for fn, found in zip(functions, rates, strict=True):
            _round(fn, texts, seconds, found)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per round (default 0.5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (default 5)")
    args = parser.parse_args()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}; "
        f"{args.rounds} interleaved rounds of {args.seconds}s per function.\n"
        "Analyses per second per core: best round by CPU time (wall clock in brackets).\n"
    )
    header = (
        f"{'text':<37} {'ours: result':<18} {'ours/s':>20} {'baseline/s':>22} "
        f"{'ours/baseline':>13}  {'baseline parts':>14}"
    )
    print(header)
    print("-" * len(header))
    target_line = ""
    for name, template in CASES:
        texts = _variants(template)
        assert len({len(t) for t in texts}) == 1 and len(set(texts)) == VARIANTS
        info = segments(texts[0])
        ours, base = _measure([segments, sms_parts], texts, args.seconds, args.rounds)
        (ours_cpu, ours_wall), (base_cpu, base_wall) = ours.best(), base.best()
        result = f"{info.encoding} {info.units}u {info.segments}p"
        print(
            f"{name:<37} {result:<18} {ours_cpu:>9,.0f} ({ours_wall:>8,.0f}) "
            f"{base_cpu:>10,.0f} ({base_wall:>9,.0f}) {ours_cpu / base_cpu:>13.2f}  "
            f"{sms_parts(texts[0]):>14}"
        )
        if name == CASES[0][0]:
            verdict = "met" if ours_cpu >= TARGET_GSM7_PER_SECOND else "NOT met"
            target_line = (
                f"target {TARGET_GSM7_PER_SECOND:,}/s for the 160-char GSM-7 text: {verdict} "
                f"(median round {ours.median_cpu():,.0f}/s)"
            )
    print()
    print(target_line)
    print(
        "'u' units, 'p' parts. The baseline returns only a part count: it stops at the first"
        " non-GSM character, and miscounts escapes, surrogate pairs and clusters."
    )


if __name__ == "__main__":
    main()
