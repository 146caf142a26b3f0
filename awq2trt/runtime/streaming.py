"""Incremental detokenization that never emits half a multi-byte character."""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feeds token ids one by one and returns the text they add, holding back incomplete UTF-8 sequences.

    Byte-level BPE can split one character over several tokens; decoding such a prefix yields U+FFFD. The text
    of the tokens since ``prefix`` is decoded in a sliding window (as text-generation-inference does), and a
    piece ending in U+FFFD is held until the next token completes it. ``finish`` flushes whatever is left.
    """

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0  # window start: ids before it are already emitted and stable
        self.read = 0  # ids[:read] are emitted
        self.emitted: list[str] = []

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            piece = after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.emitted.append(piece)
            return piece
        return ""

    def finish(self) -> str:
        full = self._decode(self.ids)
        done = "".join(self.emitted)
        piece = full[len(done) :] if full.startswith(done) else ""
        if piece:
            self.emitted.append(piece)
        return piece
