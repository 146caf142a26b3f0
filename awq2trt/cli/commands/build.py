"""`awq2trt build`: an exported `--target trt` folder -> a TensorRT engine (+ engine.json) for this GPU."""

from __future__ import annotations

import argparse
import sys

from awq2trt.cli import options
from awq2trt.cli.output import human_bytes, print_json
from awq2trt.errors import Awq2TrtError

# Imported by name so `--help` works without TensorRT: neither module imports it (nor numpy).
from awq2trt.tensorrt.profiles import DEFAULT_MAX_BATCH, DEFAULT_MAX_CONTEXT
from awq2trt.tensorrt.sizes import SIZE_FORMS, parse_size


def workspace_size(text: str) -> int:
    """argparse type for --workspace: a bad size is a usage error naming the accepted forms."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "build",
        help="build a TensorRT engine from an exported trt folder",
        description="Build a TensorRT engine (strongly typed, prefill and decode optimization profiles) from a"
        " folder `awq2trt export --target trt` wrote; engine.json beside it records the limits for the runtime."
        " Needs TensorRT 10 or 11 and an NVIDIA GPU: the engine is for the GPU it is built on.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="exported folder (awq2trt export --target trt)")
    p.add_argument(
        "-o",
        "--output",
        metavar="ENGINE",
        help="engine file (default MODEL_DIR/model.plan); in another folder, the sidecar and tokenizer are copied"
        " beside it so that folder stands alone",
    )
    p.add_argument(
        "--max-batch",
        type=options.positive_int,
        default=None,
        help=f"largest batch the engine runs (default {DEFAULT_MAX_BATCH}: one conversation, the smallest engine)",
    )
    p.add_argument(
        "--max-seq",
        type=options.positive_int,
        default=None,
        help="longest prompt one prefill takes (default: --max-context)",
    )
    p.add_argument(
        "--max-context",
        type=options.positive_int,
        default=None,
        help=f"longest prompt + generated tokens (default: min({DEFAULT_MAX_CONTEXT}, max_position_embeddings))",
    )
    p.add_argument(
        "--workspace",
        type=workspace_size,
        default=None,
        metavar="SIZE",
        help=f"cap on the scratch memory TensorRT may give a layer, {SIZE_FORMS}"
        " (default: TensorRT's, the GPU's memory)",
    )
    p.add_argument(
        "--timing-cache",
        metavar="FILE",
        default=None,
        help="TensorRT timing cache: read when it exists, written back after the build (later builds are faster)",
    )
    p.add_argument(
        "--plugin-lib",
        metavar="LIB",
        action="append",
        default=[],
        help="TensorRT plugin library to load before parsing (repeatable); engine.json records it for the runtime",
    )
    options.add_force(p, help="replace an existing engine, engine.json and copied files")
    options.add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from awq2trt.tensorrt.builder import build_engine
    from awq2trt.tensorrt.parser_errors import OnnxParseError

    try:
        result = build_engine(
            args.model_dir,
            args.output,
            max_batch=args.max_batch,
            max_seq=args.max_seq,
            max_context=args.max_context,
            workspace=args.workspace,
            timing_cache=args.timing_cache,
            plugin_libs=args.plugin_lib,
            force=args.force,
            progress=not args.quiet and not args.json,
            verbose=args.verbose,
        )
    except OnnxParseError as error:
        if args.verbose:
            raise
        for line in error.lines[:-1]:  # the dispatcher prints the last one, with the exit code it gives
            print(f"error: {line}", file=sys.stderr)
        raise Awq2TrtError(error.lines[-1]) from None
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    info = result.info
    if args.json:
        print_json(
            {
                "engine_path": str(result.engine),
                "engine_info_path": str(result.info_path),
                **info.to_json(),  # what engine.json says
                "copied": list(result.copied),
                "timing_cache": str(result.timing_cache) if result.timing_cache else None,
                "seconds": result.seconds,
            }
        )
        return 0
    print(
        f"{result.engine}: {human_bytes(info.engine_bytes)}, TensorRT {info.tensorrt_version}, {info.dtype},"
        f" batch <= {info.max_batch}, prompt <= {info.max_seq}, context <= {info.max_context},"
        f" {result.seconds:.1f} s"
    )
    return 0
