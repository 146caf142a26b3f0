"""`awq2trt eval`: perplexity of an exported folder (ONNX Runtime) or of a checkpoint (PyTorch reference)."""

from __future__ import annotations

import argparse

from awq2trt.cli import options
from awq2trt.cli.models import (
    is_exported,
    model_path,
    open_exported,
    reference_model_and_tokenizer,
    refuse_runtime_options,
)
from awq2trt.cli.output import print_json

EVAL_TEXT = str(options.EVAL_TEXT)


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "eval",
        help="perplexity of an exported folder or a checkpoint",
        description="Perplexity on a text file (no BOS; the same protocol for ONNX Runtime and the reference).",
    )
    p.add_argument("model", help=options.MODEL_OR_FOLDER_HELP)
    p.add_argument("--text", default=EVAL_TEXT, help=f"text file (default {EVAL_TEXT})")
    p.add_argument("--window", type=options.positive_int, default=512, help="tokens per window (default 512)")
    p.add_argument(
        "--stride", type=options.positive_int, default=512, help="tokens between window starts (default 512)"
    )
    options.add_folder_or_checkpoint(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    path = model_path(args.model, args.cache_dir)
    if is_exported(path):
        from awq2trt.evaluate.ort_eval import ort_text_perplexity

        model = open_exported(path, args)
        result = ort_text_perplexity(model, args.text, window=args.window, stride=args.stride, show=not args.quiet)
    else:
        refuse_runtime_options(args, ("threads", "provider", "kernels", "backend"))
        model, tokenizer = reference_model_and_tokenizer(path, args)
        from awq2trt.evaluate.reference import text_perplexity

        result = text_perplexity(
            model, tokenizer, args.text, window=args.window, stride=args.stride, show=not args.quiet
        )
    if args.json:
        print_json({"perplexity": result.perplexity, "tokens": result.tokens_scored, "windows": result.windows})
    else:
        print(f"perplexity {result.perplexity:.4f} ({result.tokens_scored} tokens, {result.windows} windows)")
    return 0
