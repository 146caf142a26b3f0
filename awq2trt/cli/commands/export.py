"""`awq2trt export`: trace a checkpoint into ONNX, run the graph passes, lower it for a target."""

from __future__ import annotations

import argparse
from types import ModuleType

from awq2trt.cli import options
from awq2trt.cli.models import model_path
from awq2trt.cli.output import print_json
from awq2trt.cli.quiet import quiet_compiler_logs
from awq2trt.ir.int4_op import WEIGHT_LAYOUTS
from awq2trt.output_lock import output_lock
from awq2trt.targets.base import DEFAULT_WEIGHT_LAYOUT
from awq2trt.targets.lm_head import LM_HEAD_CHOICES
from awq2trt.targets.ort import ACCURACY_LEVELS
from awq2trt.targets.registry import all_targets


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "export",
        help="trace a checkpoint into an ONNX graph",
        description="Trace a checkpoint into ONNX (awq2trt::Int4MatMul nodes, KV cache IO, external data).",
    )
    p.add_argument("checkpoint", nargs="?", help=options.MODEL_HELP)
    p.add_argument("-o", "--output", help="output folder (model.onnx, data, tokenizer, awq2trt.json)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=options.DTYPES,
        help="activation and scale dtype (default: the target's; fp16 for trt, fp32 for the others)",
    )
    targets = all_targets()  # the registry: importing it loads neither torch nor onnx
    p.add_argument(
        "--target",
        default="ir",
        choices=[t.name for t in targets],
        help="; ".join(f"{t.name}: {t.description}" for t in targets).replace("%", "%%"),
    )
    p.add_argument(
        "--accuracy-level",
        type=int,
        default=4,
        choices=ACCURACY_LEVELS,
        help="ort and ort-kernels targets: 4 = int8 activations in the int4 matmuls (fastest, ~0.5%% error),"
        " 0 = exact (ort-kernels takes only these two)",
    )
    p.add_argument(
        "--lm-head",
        default=LM_HEAD_CHOICES[0],
        choices=LM_HEAD_CHOICES,
        help="ort and ort-kernels targets: fp keeps the output head exact (default); int8 or int4 quantizes it"
        " (RTN, group 32, a MatMulNBits):"
        " on small models it is the largest read per token",
    )
    p.add_argument(
        "--weight-layout",
        default=None,
        choices=WEIGHT_LAYOUTS,
        help=f"ort-kernels target: how the int4 weights are stored (default {DEFAULT_WEIGHT_LAYOUT} at accuracy level"
        " 4, rows at 0): rows as in the IR graph, or tiles16, 16-row tiles the library's int8 kernel reads without"
        " repacking (the function bodies still run them in stock ONNX Runtime)",
    )
    fusion = p.add_argument_group("graph passes")
    fusion.add_argument("--passes", default=None, help="run only these passes, comma-separated (default: all)")
    fusion.add_argument("--disable-passes", default=None, help="skip these passes, comma-separated")
    fusion.add_argument("--no-fuse", action="store_true", help="run no graph pass (the traced graph as it is)")
    fusion.add_argument("--list-passes", action="store_true", help="list the passes in running order and exit")
    fusion.add_argument(
        "--fuse-mapping",
        default=None,
        metavar="FILE",
        help="JSON saying which projections fuse, for model types without a built-in mapping",
    )
    p.add_argument(
        "--full-trace",
        action="store_true",
        help="trace every decoder layer (default: trace three, copy the last for the rest when all layers are alike)",
    )
    options.add_force(p)
    options.add_json(p)
    options.add_allow_pickle(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if not args.list_passes:
        # Checked before anything is imported: a missing argument is a usage mistake, reported at once.
        missing = [name for name, value in (("CHECKPOINT", args.checkpoint), ("-o/--output", args.output)) if not value]
        if missing:
            raise options.UsageError(f"missing {' and '.join(missing)} (or pass --list-passes)")
    quiet_compiler_logs(args.verbose)
    from awq2trt import passes

    if args.list_passes:
        print(passes.DEFAULT_PASSES.describe())
        return 0
    # Held for the whole run (minutes of tracing), not only while writing: a second run into the path fails at once.
    with output_lock(args.output):
        return _export(args, passes)


def _export(args: argparse.Namespace, passes: ModuleType) -> int:
    from awq2trt.frontend.export import export_checkpoint

    enabled = [] if args.no_fuse else passes.parse_pass_list(args.passes)
    result = export_checkpoint(
        model_path(args.checkpoint, args.cache_dir),
        args.output,
        dtype=args.dtype,
        target=args.target,
        accuracy_level=args.accuracy_level,
        lm_head=args.lm_head,
        weight_layout=args.weight_layout,
        passes=enabled,
        disable_passes=passes.parse_pass_list(args.disable_passes) or (),
        fuse_mapping=args.fuse_mapping,
        full_trace=args.full_trace,
        force=args.force,
        allow_pickle=args.allow_pickle,
        progress=not args.quiet,
    )
    if args.json:
        print_json(
            {
                "output": str(result.output),
                "target": args.target,
                "int4_nodes": result.int4_nodes,
                "quantized_linears": result.quantized_linears,
                "data_bytes": result.data_bytes,
                "seconds": result.seconds,
                "passes": result.passes,
            }
        )
        return 0
    print(
        f"{result.output}: {result.int4_nodes} int4 matmul nodes, {result.data_bytes / 2**20:.1f} MB of weights,"
        f" {result.seconds:.1f} s"
    )
    print(f"passes: {passes.counts_line(result.passes)}")
    return 0
