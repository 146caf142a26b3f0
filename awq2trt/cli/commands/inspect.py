"""`awq2trt inspect`: describe a checkpoint, or an exported folder from its sidecar."""

from __future__ import annotations

import argparse
from typing import Any

from awq2trt.cli import options
from awq2trt.cli.export_summary import describe_export, export_rows
from awq2trt.cli.models import is_exported, model_path
from awq2trt.cli.output import human_bytes, print_json, print_table
from awq2trt.cli.quiet import quiet_compiler_logs
from awq2trt.errors import Awq2TrtError, folder_listing

CONFIG_FILE = "config.json"


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "inspect",
        help="describe a checkpoint or an exported folder",
        description="Describe a checkpoint (format, architecture, quantization, sizes) or an exported folder"
        " (target, passes, IO, sizes).",
    )
    p.add_argument("path", help=f"exported folder, or {options.MODEL_HELP}")
    options.add_json(p)
    p.add_argument(
        "--check", action="store_true", help="checkpoints: also decode every tensor and check it against config.json"
    )
    options.add_allow_pickle(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    path = model_path(args.path, args.cache_dir)
    if is_exported(path):
        if args.check:
            raise Awq2TrtError("--check", expected="a checkpoint folder", got=f"an exported folder ({path})")
        info = describe_export(path)
        if args.json:
            print_json(info)
        else:
            print_table(export_rows(info))
        return 0
    if not (path / CONFIG_FILE).is_file():
        raise Awq2TrtError(
            path / CONFIG_FILE,
            expected="a Hugging Face config.json (checkpoint) or awq2trt.json (exported folder)",
            got=f"neither (folder holds {folder_listing(path)})",
        )
    from awq2trt.checkpoint import describe_checkpoint, open_checkpoint

    ckpt = open_checkpoint(path, allow_pickle=args.allow_pickle)
    info = describe_checkpoint(ckpt)
    if args.check:
        quiet_compiler_logs(args.verbose)
        from awq2trt.modeling import load_reference_model

        # Building the reference model decodes every weight and checks it against config.json.
        load_reference_model(ckpt, progress=not args.quiet)
        info["check"] = "ok: every tensor decodes and matches config.json"
    if args.json:
        print_json(info)
    else:
        print_table(_checkpoint_rows(info))
    return 0


def _checkpoint_rows(info: dict[str, Any]) -> list[tuple[str, object]]:
    zero_point = info["zero_point"]
    rows: list[tuple[str, object]] = [
        ("path", info["path"]),
        ("format", info["format_title"] + (f" (version {info['version']})" if info["version"] else "")),
        ("architecture", f"{info['architecture']} (model_type {info['model_type']})"),
        ("layers", info["num_layers"]),
        ("hidden size", info["hidden_size"]),
        ("heads / kv heads", f"{info['num_attention_heads']} / {info['num_key_value_heads']}"),
        ("bits", info["bits"] or "-"),
        ("group size", info["group_size"] or "-"),
        ("zero point", "-" if zero_point is None else ("yes" if zero_point else "no (symmetric)")),
        ("quantized linears", info["quantized_linears"]),
        ("quantized params", f"{info['quantized_params']:,} ({human_bytes(info['quantized_bytes'])} on disk)"),
        ("dense params", f"{info['dense_params']:,} ({human_bytes(info['dense_bytes'])} on disk)"),
        ("weight files", ", ".join(info["weight_files"])),
    ]
    if "check" in info:
        rows.append(("check", info["check"]))
    return rows
