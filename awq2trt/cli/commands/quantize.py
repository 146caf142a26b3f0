"""`awq2trt quantize`: dense Hugging Face model -> AutoAWQ GEMM checkpoint (AWQ or round to nearest)."""

from __future__ import annotations

import argparse
from typing import Any

from awq2trt.cli import options
from awq2trt.cli.models import model_path
from awq2trt.cli.output import print_json
from awq2trt.cli.quiet import quiet_compiler_logs
from awq2trt.output_lock import output_lock

# awq2trt.quantize.api.METHODS, the default first; a test keeps the two equal (importing it here would
# load torch for every command, since the parser is built before a command is chosen).
METHODS = ("awq", "rtn")
DEFAULT_GROUP_SIZE = 128  # AutoAWQ's default; models whose widths 128 does not divide need 64 or 32
DEVICES = ("cpu", "cuda")


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "quantize",
        help="quantize a dense model to an AWQ checkpoint",
        description="Quantize a dense Hugging Face model to int4 and write an AutoAWQ GEMM checkpoint.",
    )
    p.add_argument("model", help=options.MODEL_HELP)
    p.add_argument("-o", "--output", required=True, help="output checkpoint folder")
    p.add_argument(
        "--method",
        default=METHODS[0],
        choices=METHODS,
        help="awq (default): activation-aware scales and clipping searched on calibration text; rtn: round to nearest",
    )
    p.add_argument(
        "--group-size",
        type=options.positive_int,
        default=DEFAULT_GROUP_SIZE,
        help=f"input channels per scale group (default {DEFAULT_GROUP_SIZE}; SmolLM2's width 576 needs 64 or 32)",
    )
    zp = p.add_mutually_exclusive_group()
    zp.add_argument(
        "--zero-point", dest="zero_point", action="store_true", default=True, help="asymmetric, with zero points"
    )
    zp.add_argument("--symmetric", dest="zero_point", action="store_false", help="symmetric, no zero points")
    p.add_argument(
        "--modules-to-not-convert",
        nargs="*",
        default=None,
        metavar="NAME",
        help="Linears to keep dense (lm_head always is)",
    )
    p.add_argument(
        "--dense-dtype", default="fp16", choices=options.DTYPES, help="dtype of the unquantized tensors (default fp16)"
    )
    p.add_argument(
        "--max-shard-mb",
        type=options.positive_float,
        default=None,
        help="split the weights into shards of at most this size",
    )
    options.add_force(p)
    options.add_json(p)
    options.add_allow_pickle(p)
    awq = p.add_argument_group("awq options")
    awq.add_argument(
        "--calib",
        default=None,
        metavar="FILE",
        help='calibration text: plain text, or JSONL with a "text" field'
        " (default: /usr/share/common-licenses other than GPL-3, the evaluation text)",
    )
    awq.add_argument(
        "--calib-samples", type=options.positive_int, default=None, help="calibration samples (default 34)"
    )
    awq.add_argument(
        "--calib-seqlen", type=options.positive_int, default=None, help="tokens per calibration sample (default 512)"
    )
    awq.add_argument(
        "--mapping",
        action="append",
        default=None,
        metavar="FILE",
        help="JSON scaling-group table for a model type awq2trt does not know (repeatable)",
    )
    awq.add_argument("--device", default=None, choices=DEVICES, help="where the search runs (default cpu)")
    awq.add_argument(
        "--threads", type=options.positive_int, default=None, help="CPU threads for the search (default: torch's)"
    )
    awq.add_argument("--report", action="store_true", help="print the per-block self-check table (RTN vs AWQ)")
    awq.add_argument(
        "--allow-worse",
        action="store_true",
        help="write the checkpoint even when a block's AWQ error exceeds RTN's by more than 5%%",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.json and args.report:
        raise options.UsageError("--report prints a table on stdout; it cannot be combined with --json")
    # Held for the whole run, not only while writing: a second run into the same path fails at once.
    with output_lock(args.output):
        return _quantize(args)


def _quantize(args: argparse.Namespace) -> int:
    quiet_compiler_logs(args.verbose)
    from awq2trt.quantize import quantize_checkpoint

    out = quantize_checkpoint(
        model_path(args.model, args.cache_dir),
        args.output,
        method=args.method,
        group_size=args.group_size,
        zero_point=args.zero_point,
        modules_to_not_convert=args.modules_to_not_convert,
        dense_dtype=args.dense_dtype,
        max_shard_bytes=int(args.max_shard_mb * 2**20) if args.max_shard_mb else None,
        force=args.force,
        allow_pickle=args.allow_pickle,
        progress=not args.quiet,
        **_awq_options(args),
    )
    if args.json:
        print_json(
            {
                "output": str(out),
                "method": args.method,
                "group_size": args.group_size,
                "zero_point": args.zero_point,
                "bytes": sum(p.stat().st_size for p in out.glob("*.safetensors")),
            }
        )
    else:
        print(out)
    return 0


def _awq_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options only --method awq reads, passed only when given (RTN refuses them by name)."""
    given = {
        "calib": args.calib,
        "calib_samples": args.calib_samples,
        "calib_seqlen": args.calib_seqlen,
        "mapping_files": args.mapping or (),
        "device": args.device,
        "threads": args.threads,
        "allow_worse": args.allow_worse,
        "report": args.report,
    }
    return {k: v for k, v in given.items() if v not in (None, False, ())}
