"""`awq2trt bench`: prefill and decode speed of an exported folder in ONNX Runtime."""

from __future__ import annotations

import argparse

from awq2trt.cli import options
from awq2trt.cli.models import is_exported, model_path, open_exported
from awq2trt.cli.output import print_json
from awq2trt.errors import Awq2TrtError


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "bench",
        help="prefill and decode speed of an exported folder or a TensorRT engine",
        description="Prefill tok/s per prompt length, decode tok/s, time to first token, peak RSS, model bytes.",
    )
    p.add_argument("model", help="exported folder (awq2trt export) or engine folder (awq2trt build)")
    p.add_argument(
        "--rounds",
        type=options.positive_int,
        default=3,
        help="measurements per figure, after one warm-up (default 3)",
    )
    p.add_argument("--new-tokens", type=options.positive_int, default=64, help="tokens decoded per round (default 64)")
    p.add_argument("--prompt-lengths", default="128,512", help="prefill prompt lengths (default 128,512)")
    options.add_json(p)
    options.add_runtime(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from awq2trt.runtime.bench import benchmark, format_report

    path = model_path(args.model, args.cache_dir)
    if not is_exported(path):
        raise Awq2TrtError(path, expected="an exported folder with awq2trt.json (`awq2trt export`)", got="none there")
    try:
        lengths = tuple(int(v) for v in args.prompt_lengths.split(","))
    except ValueError:
        raise Awq2TrtError("--prompt-lengths", expected="comma-separated integers", got=args.prompt_lengths) from None
    model = open_exported(path, args)
    report = benchmark(
        model,
        prompt_lengths=lengths,
        new_tokens=args.new_tokens,
        rounds=args.rounds,
        provider=args.provider if model.backend == "onnxruntime" else "tensorrt",
        threads=args.threads,
    )
    if args.json:
        print_json(report.to_json())
    else:
        print(format_report(report))
    return 0
