"""Fuzz chat templates: *data* is tokenizer_config.json (its chat_template and special tokens).

Rendering must end, within its time limit, in a prompt or our error: never a Python object reached, a
traceback, or a hang (libFuzzer's -timeout catches those).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fresh_folder, fuzz, instrumented, our_error_only

with instrumented(__name__):
    from awq2trt.runtime.text_model import TOKENIZER_CONFIG_FILE, chat_prompt

NAME = "chat_template"
MESSAGES = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hi {{ there }} <|im_end|>"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
]


def one_input(data: bytes) -> None:
    folder = fresh_folder(NAME)
    (folder / TOKENIZER_CONFIG_FILE).write_bytes(data)
    with our_error_only():
        prompt = chat_prompt(folder, MESSAGES)
        assert isinstance(prompt, str)


if __name__ == "__main__":
    fuzz(one_input, NAME)
