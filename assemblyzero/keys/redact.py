"""Masking secrets: the known key values of this run plus common key shapes.

Everything the tool writes or prints that could carry model or provider
text goes through a Redactor: worker lines, lineage, checkpoint state,
result reasons, the journal and the summary. prefix-tee masks the key
shapes again on the terminal and in the log, as a last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from assemblyzero.ui.prefix_tee import KEY_SHAPES, MASK

_SHAPES = re.compile(KEY_SHAPES.pattern.decode())
_MIN_SECRET = 6  # shorter "secrets" would mask ordinary words


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        parts = [re.escape(s) for s in known] + [_SHAPES.pattern]
        self._pattern = re.compile("|".join(parts))
        self._mask = MASK.decode()

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._mask, text)

    def line(self, text: str) -> str:
        """`text` as one line for the terminal or a log: masked, then made printable.

        Masked first: `printable` shows a newline as `\\n`, which would hide a key
        starting right after it from the key shapes. A secret split by a control
        character (`correct-horse-\\x07battery`), or a key shape right after an
        escape sequence, is found once the controls are gone: then they all go,
        rather than shown, so no piece of it shows.
        """
        from assemblyzero.ui.console import ESCAPES, printable  # the one sanitizer of lines

        masked = self(text)
        # Controls dropped (a secret split by one) or read as a gap (a key right after one).
        for joined in (ESCAPES.sub("", masked), ESCAPES.sub(" ", masked)):
            hidden = self(joined)
            if hidden != joined:
                return printable(hidden)
        return self(printable(masked))
