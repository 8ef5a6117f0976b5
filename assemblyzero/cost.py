"""What model calls cost: prices per `provider:model`, spend that may be partly unknown,
and the estimate of an item's cost before it runs (docs/user-guide.md, Cost and budget).

A price is USD per million input and output tokens. The built-in table covers the models
the README names, as their providers published them on PRICES_AS_OF; a workspace's
`[tool.assemblyzero.prices]` adds to it or overrides it. A call's cost is known when its
model has a price and its reply reported both token counts (a zero price needs no
counts); otherwise the call is *unpriced*, counted as such, and never taken as free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from assemblyzero.keys.redact import Redactor
from assemblyzero.numbers import finite

# The built-in prices, USD per million tokens, and where each came from.
PRICES_AS_OF = "2026-12-02"
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    # platform.claude.com/docs/en/models/sonnet-4-5: $3 / $15 per MTok (deprecated by
    # Anthropic; retired on 2026-11-30, kept for the README's examples and older runs)
    "anthropic:claude-sonnet-4-5": (3.0, 15.0),
    "anthropic:claude-sonnet-4-5-20250929": (3.0, 15.0),  # the same model, dated
    # openai.com/api/pricing: gpt-4o $2.50 / $10.00 per 1M tokens
    "openai:gpt-4o": (2.5, 10.0),
    "openai:gpt-4o-2024-08-06": (2.5, 10.0),  # the snapshot gpt-4o points at
    "openai:gpt-4o-2024-11-20": (2.5, 10.0),
    "openai:gpt-4o-2024-05-13": (5.0, 15.0),  # the first snapshot costs more
    # ai.google.dev/gemini-api/docs/pricing: gemini-2.5-pro $1.25 / $10.00 per 1M tokens
    # for prompts up to 200k tokens (longer prompts cost $2.50 / $15.00: not modelled)
    "gemini:gemini-2.5-pro": (1.25, 10.0),
}
FREE_PROVIDERS = ("offline",)  # the embedded provider: no network, no bill
PRICE_MAX = 10_000.0  # USD per million tokens: above any model's price; more is a typo
SPEC_LIMIT = 200  # characters of a `provider:model` price key

# What one item is assumed to take before any has run (the dry-run estimate and the
# budget's reserve for a running item): the typical path, draft -> review -> revise ->
# review, with these token counts besides the input document's own (~4 characters each).
PROMPT_TOKENS = 1_500  # system message, instructions and the template
DRAFT_TOKENS = 2_000  # one draft or revision
REVIEW_TOKENS = 600  # one review
CHARS_PER_TOKEN = 4


class PriceError(ValueError):
    """A price entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0

    def of(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """The cost of one call, or None when it cannot be known (a count is missing)."""
        if self.free:
            return 0.0
        if input_tokens is None or output_tokens is None:
            return None
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class Spend:
    """Money spent: the sum over the calls whose cost is known, and how many were not."""

    usd: float = 0.0
    unpriced: int = 0

    @property
    def known(self) -> bool:
        return self.unpriced == 0

    def plus(self, other: Spend) -> Spend:
        return Spend(self.usd + other.usd, self.unpriced + other.unpriced)

    def call(self, usd: float | None) -> Spend:
        """This spend and one more call (None: its cost is unknown)."""
        return Spend(self.usd + usd, self.unpriced) if usd is not None else Spend(
            self.usd, self.unpriced + 1)

    def pair(self) -> list[float | int]:
        """As a result file stores it: [usd, unpriced calls]."""
        return [round(self.usd, 9), self.unpriced]

    def to_json(self) -> dict[str, float | int | None]:
        """As summary.json shows it: `usd` is null when some call's cost is unknown."""
        priced = round(self.usd, 6)
        return {"usd": priced if self.known else None, "priced_usd": priced,
                "unpriced_calls": self.unpriced}

    def shown(self) -> str:
        """`$0.0123`, `unknown`, or `$0.0123+unknown`: never a 0 for what is unknown."""
        if self.known:
            return money(self.usd)
        return "unknown" if self.usd == 0 else f"{money(self.usd)}+unknown"

    @classmethod
    def read(cls, value: object) -> Spend | None:
        """A stored [usd, unpriced] pair, or None when it is not one of ours."""
        if not (isinstance(value, list) and len(value) == 2):
            return None
        usd, unpriced = value
        usd = finite(usd)
        if usd is None or not 0 <= usd <= SPEND_MAX:
            return None
        if isinstance(unpriced, bool) or not isinstance(unpriced, int) or not (
                0 <= unpriced <= CALLS_MAX):
            return None
        return cls(float(usd), unpriced)


SPEND_MAX = 1e9  # USD: a stored spend above this is not one of ours
CALLS_MAX = 1_000_000  # calls: likewise


def money(usd: float, exact: bool = False) -> str:
    """USD for a person: cents when there are some, four decimals below a cent (`exact`:
    every decimal given, up to six, as a limit the user set is shown)."""
    if usd == 0:
        return "$0"
    if exact:
        shown = f"{usd:.6f}".rstrip("0")
        return f"${shown}" if len(shown.partition(".")[2]) > 2 else f"${usd:.2f}"
    if usd < 0.00005:
        return "<$0.0001"
    return f"${usd:.2f}" if usd >= 0.01 else f"${usd:.4f}"


class Prices:
    """The price table: built in, with a workspace's entries over it."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.table = {spec: Price(*pair) for spec, pair in BUILTIN_PRICES.items()}
        self.table.update(overrides or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prices) and self.table == other.table

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.table.items())))

    def of(self, spec: str) -> Price | None:
        """The price of `spec` (`provider:model`), or None when it has none."""
        found = self.table.get(spec)  # a dated id only where listed: a snapshot may cost more
        if found is None and spec.partition(":")[0] in FREE_PROVIDERS:
            return Price(0.0, 0.0)
        return found


def parse_prices(value: object, source: str) -> dict[str, Price]:
    """`[tool.assemblyzero.prices]` as read from TOML: {"provider:model": {input, output}}.

    `source` names where it came from in messages. A bad entry is a PriceError naming it.
    """
    example = '"openai:gpt-4o" = { input = 2.5, output = 10.0 }'
    if not isinstance(value, dict):
        raise PriceError(f"{source}: prices must be a table of \"provider:model\" = "
                         f"{{ input = USD, output = USD }} entries (USD per million tokens), "
                         f"e.g. {example}")
    prices: dict[str, Price] = {}
    for spec, entry in value.items():
        shown = Redactor()(repr(spec[:SPEC_LIMIT]) if isinstance(spec, str) else repr(spec))
        provider, sep, model = str(spec).partition(":")
        if (not isinstance(spec, str) or len(spec) > SPEC_LIMIT or not sep or not provider
                or not model or not spec.isprintable()):
            raise PriceError(f"{source}: price key {shown} must be a model spec such as "
                             f"\"openai:gpt-4o\" (at most {SPEC_LIMIT} printable characters); "
                             f"write e.g. {example}")
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise PriceError(f"{source}: the price of {shown} must be {{ input = USD, output = "
                             f"USD }} per million tokens, nothing else; write e.g. {example}")
        rates = [entry["input"], entry["output"]]
        for name, rate in zip(("input", "output"), rates, strict=True):
            if (isinstance(rate, bool) or not isinstance(rate, (int, float))
                    or not math.isfinite(rate) or not 0 <= rate <= PRICE_MAX):
                raise PriceError(f"{source}: the {name} price of {shown} must be a number of "
                                 f"USD per million tokens from 0 to {PRICE_MAX:g} (got "
                                 f"{rate!r}); write e.g. {example}")
        prices[spec] = Price(float(rates[0]), float(rates[1]))
    return prices


def estimate_item(drafter: Price | None, reviewer: Price | None,
                  input_chars: int) -> float | None:
    """What one item is expected to cost (see PROMPT_TOKENS): None when a model has no price."""
    if drafter is None or reviewer is None:
        return None
    source = max(0, input_chars) // CHARS_PER_TOKEN
    draft_in = PROMPT_TOKENS + source
    review_in = draft_in + DRAFT_TOKENS
    revise_in = review_in + REVIEW_TOKENS
    usd = [drafter.of(draft_in, DRAFT_TOKENS), reviewer.of(review_in, REVIEW_TOKENS),
           drafter.of(revise_in, DRAFT_TOKENS), reviewer.of(review_in, REVIEW_TOKENS)]
    return sum(u for u in usd if u is not None)
