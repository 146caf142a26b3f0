"""`awq2trt run`: answer a prompt, streamed; ONNX Runtime for an exported folder, the reference otherwise."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from awq2trt.cli import options
from awq2trt.cli.models import (
    backend_label,
    is_exported,
    model_path,
    open_exported,
    reference_model_and_tokenizer,
    refuse_runtime_options,
)
from awq2trt.cli.output import print_json, stream

SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "seed", "raw")


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "run",
        help="answer a prompt, streamed",
        description="Chat answer to a prompt, streamed (greedy unless --temperature is given).",
    )
    p.add_argument("model", help=options.MODEL_OR_FOLDER_HELP)
    p.add_argument("-p", "--prompt", required=True, help="the user message")
    p.add_argument(
        "-n", "--max-new-tokens", type=options.non_negative_int, default=64, help="tokens to generate (default 64)"
    )
    sampling = p.add_argument_group("sampling (exported folders)")
    sampling.add_argument("--temperature", type=float, default=None, help="0 or absent: greedy")
    sampling.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0: all)")
    sampling.add_argument("--top-p", type=float, default=None, help="keep the smallest set with this mass (1: all)")
    sampling.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    sampling.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    options.add_folder_or_checkpoint(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    path = model_path(args.model, args.cache_dir)
    # With --json the answer comes back whole, in the JSON object, instead of streamed.
    on_text = None if args.json else stream
    if is_exported(path):
        return _run_exported(path, args, on_text)
    refuse_runtime_options(args, ("threads", "provider", "kernels", "backend", *SAMPLING_OPTIONS))
    model, tokenizer = reference_model_and_tokenizer(path, args)
    from awq2trt.evaluate.reference import chat_generate

    gen = chat_generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, stream=on_text)
    if args.json:
        print_json(
            {
                "text": gen.text,
                "new_tokens": gen.new_tokens,
                "tokens_per_s": gen.tokens_per_second,
                "backend": "pytorch",
                "dtype": args.dtype,
            }
        )
        return 0
    print()
    print(
        f"[{gen.new_tokens} tokens, {gen.tokens_per_second:.1f} tok/s, PyTorch reference, {args.dtype}]",
        file=sys.stderr,
    )
    return 0


def _run_exported(path: Path, args: argparse.Namespace, on_text: Callable[[str], None] | None) -> int:
    from awq2trt.runtime import SamplingConfig

    model = open_exported(path, args)
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    sampling = SamplingConfig(**{k: v for k, v in given.items() if v is not None})
    prompt = args.prompt if args.raw else model.apply_chat_template([{"role": "user", "content": args.prompt}])
    callback = (lambda row, piece: on_text(piece)) if on_text else None
    gen = model.generate(prompt, args.max_new_tokens, sampling=sampling, on_text=callback)
    t = gen.timing
    how = "greedy" if sampling.greedy else f"sampled, temperature {sampling.temperature}"
    if args.json:
        print_json(
            {
                "text": gen.texts[0],
                "new_tokens": len(gen.ids[0]),
                "finish_reason": gen.finish_reasons[0],
                "ttft_ms": 1000 * t.ttft_s,
                "decode_tokens_per_s": t.decode_tokens_per_s,
                "backend": model.backend,
                "provider": args.provider if model.backend == "onnxruntime" else None,
                "sampling": how,
            }
        )
        return 0
    print()
    print(
        f"[{len(gen.ids[0])} tokens ({gen.finish_reasons[0]}), time to first token {1000 * t.ttft_s:.0f} ms,"
        f" decode {t.decode_tokens_per_s:.1f} tok/s, {backend_label(model, args)}, {how}]",
        file=sys.stderr,
    )
    return 0
