"""`awq2trt triton`: an exported folder (or a TensorRT engine folder) -> a Triton model repository."""

from __future__ import annotations

import argparse
import sys

from awq2trt.cli import options
from awq2trt.cli.output import print_json
from awq2trt.output_lock import output_lock

# Constants only at import time: --help works without tritonclient or protobuf (the configs need them).
from awq2trt.triton import DEVICES, KINDS


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "triton",
        help="write a Triton Inference Server model repository",
        description="Write a Triton model repository from a folder `awq2trt export` wrote (or, for --kind"
        " tensorrt, one `awq2trt build` wrote). generate: a Python-backend text model (NAME streams, decoupled;"
        " NAME_infer answers once) that needs onnxruntime, numpy and tokenizers only; onnxruntime / tensorrt: the"
        " graph or engine with a config for that Triton backend, for clients that drive generation themselves.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="exported folder (or engine folder for --kind tensorrt)")
    p.add_argument("-o", "--output", metavar="REPO", required=True, help="the model repository folder to write")
    p.add_argument("--name", default=None, help="model name (default: MODEL_DIR's folder name)")
    p.add_argument("--kind", default=KINDS[0], choices=KINDS, help="what the repository serves (default generate)")
    p.add_argument(
        "--max-batch",
        type=options.positive_int,
        default=None,
        help="generate: requests one model instance decodes together, joining and leaving as they start and stop"
        " (default 1: one at a time); refused for the graph kinds",
    )
    p.add_argument(
        "--instances", type=options.positive_int, default=1, help="model instances Triton starts (default 1)"
    )
    p.add_argument(
        "--device",
        default=DEVICES[0],
        choices=DEVICES,
        help="instance group kind: cpu (default) or gpu (generate runs ONNX Runtime's CUDA provider there);"
        " tensorrt is always gpu",
    )
    p.add_argument(
        "--max-tokens",
        type=options.positive_int,
        default=None,
        help="generate: tokens generated when a request gives no max_tokens (default 64)",
    )
    p.add_argument(
        "--max-context",
        type=options.positive_int,
        default=None,
        help="generate: longest prompt + answer of one request; each batch slot keeps KV buffers this long"
        " (default min(2048, max_position_embeddings))",
    )
    p.add_argument(
        "--threads",
        type=options.positive_int,
        default=None,
        help="generate: ONNX Runtime intra-op threads of each instance (default: ONNX Runtime's, one per core)",
    )
    p.add_argument(
        "--kernels",
        default=None,
        metavar="PATH",
        help="generate: awq2trt's kernel library for a --target ort-kernels export, copied into the repository"
        " (default: $AWQ2TRT_ORT_KERNELS, else the copy `pip install .` built into the package)",
    )
    options.add_force(p, help="replace a non-empty repository folder")
    options.add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    with output_lock(args.output):  # a second run into the same repository fails at once
        return _write(args)


def _write(args: argparse.Namespace) -> int:
    from awq2trt.triton.repository import DEFAULT_MAX_TOKENS, write_repository

    result = write_repository(
        args.model_dir,
        args.output,
        kind=args.kind,
        name=args.name,
        max_batch=args.max_batch,
        instances=args.instances,
        device=args.device,
        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS,
        max_context=args.max_context,
        threads=args.threads,
        kernels=args.kernels,
        force=args.force,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(
            {
                "repository": str(result.repository),
                "kind": result.kind,
                "models": list(result.models),
                "files": result.files,
                "warnings": list(result.warnings),
            }
        )
        return 0
    print(f"{result.repository}: {result.kind} repository, models {', '.join(result.models)} ({result.files} files)")
    print(f"serve it: tritonserver --model-repository={result.repository}")
    return 0
