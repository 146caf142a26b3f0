"""Fuzz tokenizer loading: *data* is tokenizer.json; what loads must also encode and decode a prompt."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fresh_folder, fuzz, instrumented, our_error_only

with instrumented(__name__):
    from awq2trt.runtime.generate import Text
    from awq2trt.runtime.text_model import TOKENIZER_FILE, load_tokenizer

NAME = "tokenizer"
PROMPT = "Hello, world! 1 + 1 = 2 \u00e9\u4e2d\U0001f600"


def one_input(data: bytes) -> None:
    folder = fresh_folder(NAME)
    (folder / TOKENIZER_FILE).write_bytes(data)
    with our_error_only():
        tokenizer = load_tokenizer(folder)
        if tokenizer is None:
            return
        text = Text(tokenizer, folder / TOKENIZER_FILE)
        text.decode(text.encode(PROMPT))


if __name__ == "__main__":
    fuzz(one_input, NAME)
