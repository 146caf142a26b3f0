"""A hostile checkpoint folder cannot make us read outside it, allocate what its header claims, or run code.

Each `ContainmentCase` builds a folder next to bait files (a valid checkpoint's weights one level up, a
secret); ``awq2trt inspect PATH --check -q`` must end in our one error line and exit code 1, with an audit
hook (`tests.open_audit.OpenAudit`) showing that no file outside the folder was opened.  A few run in real
processes to show that no traceback reaches a terminal.  Symlinked files stay allowed: the Hugging Face
cache links every snapshot file to ``../../blobs/``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from awq2trt.cli import EXIT_USER_ERROR, main
from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.text_model import chat_prompt
from tests.broken_corpus import CONFIG, GEMM, INDEX, PICKLE, WEIGHTS, copy_fixture, read_raw, write_raw
from tests.cli_processes import CliResult, run_cli_processes
from tests.open_audit import OpenAudit
from tests.test_broken_inputs import ERROR_LINE, _restore_cli_side_effects  # noqa: F401 - an autouse fixture

SHARD_2 = "model-00002-of-00002.safetensors"
BAIT = "bait"  # beside the checkpoint: what a hostile index or link points at


@dataclass(frozen=True)
class ContainmentCase:
    id: str
    build: Callable[[Path], Path]  # tmp -> the checkpoint folder (tmp/bait holds what must stay unread)
    expect: tuple[str, ...]  # substrings the error line must contain
    args: tuple[str, ...] = ()


def _checkpoint(tmp: Path) -> Path:
    bait = tmp / BAIT
    bait.mkdir()
    shutil.copyfile(copy_fixture(tmp, GEMM) / WEIGHTS, bait / WEIGHTS)
    (bait / "secret.txt").write_text("not for reading")
    return tmp / GEMM


def _tensor_names(folder: Path) -> list[str]:
    return [n for n in read_raw(folder / WEIGHTS)[0] if n != "__metadata__"]


def index_naming(shard: str | Callable[[Path], str]) -> Callable[[Path], Path]:
    """An index that sends one tensor to *shard* (a name, or a function of tmp making one)."""

    def build(tmp: Path) -> Path:
        folder = _checkpoint(tmp)
        names = _tensor_names(folder)
        weight_map = dict.fromkeys(names, WEIGHTS)
        weight_map[names[0]] = shard(tmp) if callable(shard) else shard
        (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        return folder

    return build


def index_text(text: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        folder = _checkpoint(tmp)
        (folder / INDEX).write_text(text)
        return folder

    return build


def with_entry(make: Callable[[Path], None]) -> Callable[[Path], Path]:
    """The checkpoint with one extra folder entry made by *make(folder)*, named by an index."""

    def build(tmp: Path) -> Path:
        folder = _checkpoint(tmp)
        make(folder)
        return folder

    return build


def raw_weights(make: Callable[[dict, bytes], bytes]) -> Callable[[Path], Path]:
    """model.safetensors replaced by *make(header, data)* of the fixture's own."""

    def build(tmp: Path) -> Path:
        folder = _checkpoint(tmp)
        header, data = read_raw(folder / WEIGHTS)
        (folder / WEIGHTS).write_bytes(make(header, data))
        return folder

    return build


def header_bytes(header: dict, data: bytes) -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + data


def _length(value: int) -> Callable[[dict, bytes], bytes]:
    return lambda header, data: struct.pack("<Q", value) + json.dumps(header).encode() + data


def _first(header: dict) -> str:
    return next(n for n in header if n != "__metadata__")


def _claims_2_40(header: dict, data: bytes) -> bytes:
    """One tensor whose dtype x shape and offsets agree on 2^40 bytes the file does not have."""
    header[_first(header)] = {"dtype": "U8", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 40]}
    return header_bytes(header, data)


def _overlap(header: dict, data: bytes) -> bytes:
    names = [n for n in header if n != "__metadata__"]
    a, b = sorted(names, key=lambda n: header[n]["data_offsets"])[:2]
    header[b] = dict(
        header[b], data_offsets=header[a]["data_offsets"], shape=header[a]["shape"], dtype=header[a]["dtype"]
    )
    return header_bytes(header, data)


def _reversed(header: dict, data: bytes) -> bytes:
    name = _first(header)
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [end, begin]
    return header_bytes(header, data)


def _negative(header: dict, data: bytes) -> bytes:
    header[_first(header)]["data_offsets"] = [-8, 0]
    return header_bytes(header, data)


def _dtype_disagrees(header: dict, data: bytes) -> bytes:
    name = next(n for n in header if n.endswith(".qweight"))
    header[name]["dtype"] = "I64"  # same offsets, twice the bytes per element
    return header_bytes(header, data)


def _duplicate_name(header: dict, data: bytes) -> bytes:
    name = _first(header)
    blob = json.dumps(header).encode()
    entry = json.dumps({name: header[name]}).encode()[1:-1]
    blob = blob[:-1] + b", " + entry + b"}"  # the same tensor name twice in one JSON header
    return struct.pack("<Q", len(blob)) + blob + data


def _metadata_list(header: dict, data: bytes) -> bytes:
    header["__metadata__"] = ["format", "pt"]
    return header_bytes(header, data)


def _subfolder_shard(folder: Path) -> None:
    (folder / "sub").mkdir()
    shutil.move(folder / WEIGHTS, folder / "sub" / WEIGHTS)
    weight_map = dict.fromkeys(_tensor_names(folder / "sub"), f"sub/{WEIGHTS}")
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))


def _shard_is_folder(folder: Path) -> None:
    (folder / SHARD_2).mkdir()
    _send_one_to(folder, SHARD_2)


def _shard_is_fifo(folder: Path) -> None:
    os.mkfifo(folder / SHARD_2)  # opening it for reading would block forever
    _send_one_to(folder, SHARD_2)


def _weights_are_fifo(folder: Path) -> None:
    (folder / WEIGHTS).unlink()
    os.mkfifo(folder / WEIGHTS)


def _shard_links_to_dev_zero(folder: Path) -> None:
    (folder / SHARD_2).symlink_to("/dev/zero")
    _send_one_to(folder, SHARD_2)


def _send_one_to(folder: Path, shard: str) -> None:
    names = _tensor_names(folder)
    weight_map = dict.fromkeys(names, WEIGHTS)
    weight_map[names[0]] = shard
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))


def _wrong_shard(folder: Path) -> None:
    """Two shards; the index puts a tensor of the first in the second."""
    names = _tensor_names(folder)
    shutil.copyfile(folder / WEIGHTS, folder / SHARD_2)
    write_raw(folder / SHARD_2, {}, b"")
    weight_map = dict.fromkeys(names, WEIGHTS)
    weight_map[names[0]] = SHARD_2
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))


def _tensor_in_two_shards(folder: Path) -> None:
    header, data = read_raw(folder / WEIGHTS)
    name = _first(header)
    begin, end = header[name]["data_offsets"]
    write_raw(folder / SHARD_2, {name: dict(header[name], data_offsets=[0, end - begin])}, data[begin:end])
    weight_map = dict.fromkeys(_tensor_names(folder), WEIGHTS) | {"other": SHARD_2}
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))


def _index_duplicate_key(folder: Path) -> None:
    names = _tensor_names(folder)
    body = ", ".join(f'"{n}": "{WEIGHTS}"' for n in names)
    (folder / INDEX).write_text(f'{{"weight_map": {{{body}, "{names[0]}": "{SHARD_2}"}}}}')


def _sparse(path: Path, size: int, head: bytes = b"{") -> None:
    """A file of *size* bytes that costs no disk (and must cost no memory to refuse)."""
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)


def _config_1gb(folder: Path) -> None:
    _sparse(folder / CONFIG, 1 << 30)


def _index_1gb(folder: Path) -> None:
    _sparse(folder / INDEX, 1 << 30)


def _config_nested(folder: Path) -> None:
    depth = 100_000
    (folder / CONFIG).write_text('{"model_type": "llama", "x": ' + "[" * depth + "]" * depth + "}")


def _quantization_config_nested(folder: Path) -> None:
    config = json.loads((folder / CONFIG).read_text())
    text = json.dumps(config)[:-1] + ', "extra": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}"
    (folder / CONFIG).write_text(text)


class _CallsSystem:
    """A pickle that asks for ``os.system`` when loaded: weights_only=True must refuse the global."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _pickle_global(folder: Path) -> None:
    (folder / WEIGHTS).unlink()
    with (folder / PICKLE).open("wb") as fh:
        pickle.dump({"model.norm.weight": _CallsSystem(folder.parent / BAIT / "pwned")}, fh)


def _pickle_reads_file(folder: Path) -> None:
    """A pickle that asks for ``builtins.open`` on the bait secret."""

    class Opens:
        def __reduce__(self) -> tuple:
            return (open, (str(folder.parent / BAIT / "secret.txt"),))

    (folder / WEIGHTS).unlink()
    with (folder / PICKLE).open("wb") as fh:
        pickle.dump({"model.norm.weight": Opens()}, fh)


def _parent(tmp: Path) -> str:
    return f"../{BAIT}/{WEIGHTS}"


def _absolute(tmp: Path) -> str:
    return str(tmp / BAIT / WEIGHTS)


CASES: tuple[ContainmentCase, ...] = (
    # --- the index names something that is not one of the folder's own weight files
    ContainmentCase("index-parent-dir", index_naming(_parent), (INDEX, "inside the checkpoint folder")),
    ContainmentCase("index-parent-only", index_naming(".."), (INDEX,)),
    ContainmentCase("index-absolute-path", index_naming(_absolute), (INDEX,)),
    ContainmentCase("index-etc-passwd", index_naming("/etc/passwd"), (INDEX, ".safetensors")),
    ContainmentCase("index-dev-zero", index_naming("/dev/zero"), (INDEX,)),
    ContainmentCase("index-backslash-parent", index_naming(f"..\\{BAIT}\\{WEIGHTS}"), (INDEX,)),
    ContainmentCase("index-names-config-json", index_naming(CONFIG), (INDEX, "config.json")),
    ContainmentCase("index-names-tokenizer-json", index_naming("tokenizer.json"), (INDEX, ".safetensors")),
    ContainmentCase("index-names-itself", index_naming(INDEX), (INDEX,)),
    ContainmentCase("index-name-with-nul", index_naming("model\0.safetensors"), (INDEX,)),
    ContainmentCase("index-name-not-string", index_naming(lambda tmp: 7), (INDEX,)),  # type: ignore[arg-type,return-value]
    ContainmentCase("index-name-too-long", index_naming("a" * 300 + ".safetensors"), (INDEX,)),
    ContainmentCase("index-subfolder-shard", with_entry(_subfolder_shard), (INDEX, "inside the checkpoint folder")),
    ContainmentCase("index-shard-is-folder", with_entry(_shard_is_folder), (INDEX, SHARD_2)),
    ContainmentCase("index-shard-is-fifo", with_entry(_shard_is_fifo), (INDEX, SHARD_2)),
    ContainmentCase("index-shard-links-to-dev-zero", with_entry(_shard_links_to_dev_zero), (INDEX, SHARD_2)),
    ContainmentCase("index-tensor-in-wrong-shard", with_entry(_wrong_shard), (INDEX, SHARD_2)),
    ContainmentCase("index-duplicate-tensor-name", with_entry(_index_duplicate_key), (INDEX, "repeated")),
    ContainmentCase("index-1gb", with_entry(_index_1gb), (INDEX, "at most")),
    ContainmentCase("index-top-level-list", index_text("[1, 2]"), (INDEX, "weight_map")),
    ContainmentCase("tensor-stored-in-two-shards", with_entry(_tensor_in_two_shards), ("stored once",)),
    ContainmentCase("weights-are-fifo", with_entry(_weights_are_fifo), (WEIGHTS, "regular")),
    # --- the safetensors header lies about the file
    ContainmentCase("header-length-2-63", raw_weights(_length(1 << 63)), (WEIGHTS, "fits the file")),
    ContainmentCase("header-length-2-64-minus-1", raw_weights(_length((1 << 64) - 1)), (WEIGHTS, "fits the file")),
    ContainmentCase("header-length-past-end", raw_weights(_length(10_000_000)), (WEIGHTS, "fits the file")),
    ContainmentCase("tensor-claims-2-40-bytes", raw_weights(_claims_2_40), (WEIGHTS, "within the file")),
    ContainmentCase("tensor-offsets-overlap", raw_weights(_overlap), (WEIGHTS, "back to back")),
    ContainmentCase("tensor-offsets-reversed", raw_weights(_reversed), (WEIGHTS, "within the file")),
    ContainmentCase("tensor-offsets-negative", raw_weights(_negative), (WEIGHTS, "within the file")),
    ContainmentCase("tensor-dtype-disagrees-with-range", raw_weights(_dtype_disagrees), (WEIGHTS, "bytes for I64")),
    ContainmentCase("header-duplicate-tensor-name", raw_weights(_duplicate_name), (WEIGHTS, "repeated")),
    ContainmentCase("header-metadata-not-object", raw_weights(_metadata_list), (WEIGHTS, "__metadata__")),
    # --- config.json too big or too deep
    ContainmentCase("config-1gb", with_entry(_config_1gb), (CONFIG, "at most")),
    ContainmentCase("config-nested-100000", with_entry(_config_nested), (CONFIG, "nested")),
    ContainmentCase("quantization-config-nested", with_entry(_quantization_config_nested), (CONFIG, "nested")),
    # --- --allow-pickle still loads with weights_only=True
    ContainmentCase("pickle-asks-for-os-system", with_entry(_pickle_global), (PICKLE,), ("--allow-pickle",)),
    ContainmentCase("pickle-asks-for-open", with_entry(_pickle_reads_file), (PICKLE,), ("--allow-pickle",)),
)
CASES_BY_ID = {case.id: case for case in CASES}
SUBPROCESS_IDS = ("index-parent-dir", "header-length-2-63", "config-nested-100000", "pickle-asks-for-os-system")


def _params(ids: tuple[str, ...] | None = None) -> list:
    cases = CASES if ids is None else tuple(CASES_BY_ID[i] for i in ids)
    return [pytest.param(case, id=case.id) for case in cases]


def assert_error_line(case: ContainmentCase, rc: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("error: ") and "internal error" not in lines[0], lines[0]
    assert ERROR_LINE.match(lines[0]), lines[0]
    for needle in case.expect:
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"
    assert rc == EXIT_USER_ERROR, f"exit code {rc}: {lines[0]}"


def test_case_ids_are_distinct() -> None:
    assert len(CASES_BY_ID) == len(CASES) >= 30


@pytest.fixture(scope="module")
def warm_imports(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One valid --check first, so the memory peaks measured below are the case's, not first imports'."""
    assert main(["inspect", str(copy_fixture(tmp_path_factory.mktemp("warm"), GEMM)), "--check", "-q"]) == 0


@pytest.mark.usefixtures("warm_imports")
@pytest.mark.parametrize("case", _params())
def test_hostile_folder_is_contained(case: ContainmentCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = case.build(tmp_path)
    capsys.readouterr()
    tracemalloc.start()
    try:
        with OpenAudit() as audit:
            rc = main(["inspect", str(folder), "--check", "-q", *case.args])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert_error_line(case, rc, out, err)
    assert audit.outside(folder) == [], f"opened outside {folder}"
    assert not (tmp_path / BAIT / "pwned").exists(), "a pickle ran code"
    # Bounded by the real files (about 1 MB of weights), never by what a header or a size claims.
    assert peak < 64 << 20, f"peak Python allocation {peak} bytes"


def test_the_audit_sees_a_read_outside(tmp_path: Path) -> None:
    """The containment assertion can fail: a read of the bait from inside the block is reported."""
    folder = _checkpoint(tmp_path)
    with OpenAudit() as audit:
        (folder / ".." / BAIT / "secret.txt").read_text()
    assert audit.outside(folder) == [str(folder / ".." / BAIT / "secret.txt")]


def _hf_cache_layout(tmp: Path) -> Path:
    """snapshots/<rev>/ whose every file links to ../../blobs/<hash>, as huggingface_hub stores a download."""
    source = copy_fixture(tmp, GEMM)
    blobs, snapshot = tmp / "cache" / "blobs", tmp / "cache" / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(source.iterdir())):
        shutil.move(file, blobs / f"blob{i}")
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / f"blob{i}")
    return snapshot


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "with-index"])
def test_symlinked_files_stay_allowed(indexed: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = _hf_cache_layout(tmp_path)
    if indexed:
        weight_map = dict.fromkeys(_tensor_names(snapshot), WEIGHTS)
        (snapshot / INDEX).write_text(json.dumps({"weight_map": weight_map}))
    with OpenAudit() as audit:
        rc = main(["inspect", str(snapshot), "--check", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "ok: every tensor decodes" in out
    assert audit.outside(snapshot, allowed=(tmp_path / "cache" / "blobs",)) == []


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    argvs = {}
    for case_id in SUBPROCESS_IDS:
        case = CASES_BY_ID[case_id]
        argvs[case_id] = ["inspect", str(case.build(tmp_path_factory.mktemp(case_id))), "--check", "-q", *case.args]
    return run_cli_processes(argvs)


@pytest.mark.parametrize("case", _params(SUBPROCESS_IDS))
def test_hostile_folder_in_a_real_process(case: ContainmentCase, subprocess_results: dict[str, CliResult]) -> None:
    assert_error_line(case, *subprocess_results[case.id])


# ------------------------------------------------------------------------------------------- chat templates

MESSAGES = [{"role": "user", "content": "hi"}]
TEMPLATES = {
    "reaches-python-objects": ("{{ messages.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "reaches-globals": ("{{ raise_exception.__globals__['os'] }}", "unsafe"),
    "reaches-os-via-cycler": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "unsafe"),
    "mutates-messages": ("{{ messages.append(1) }}", "unsafe"),
    "loops-forever": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "2 s"),
    "loops-forever-without-calls": (
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "2 s",
    ),
    "string-bomb": ("{{ 'a' * 1000000000 }}", "refused"),
    "doubling-bomb": (
        "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
        "refused",
    ),
    "width-bomb": ("{{ '%1000000000s' % 'a' }}", "width"),
    "format-bomb": ("{{ '{:>1000000000}'.format('a') }}", "width"),
    "filter-bomb": ("{{ 'a'|center(1000000000) }}", "refused"),
    "power-bomb": ("{{ 10 ** 100000000 }}", "exponent"),
    "output-bomb": ("{% for i in range(100000) %}{{ 'abcdefghijk' }}{% endfor %}", "output"),
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
    "type-error": ("{{ 1 + 'a' }}", "TypeError"),
    "syntax-error": ("{% for %}", "TemplateSyntaxError"),
}


@pytest.fixture
def template_folder(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    def make(template: str) -> Path:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
        return tmp_path

    yield make


@pytest.mark.parametrize("label", sorted(TEMPLATES))
def test_hostile_chat_template_is_refused(label: str, template_folder: Callable[[str], Path]) -> None:
    template, needle = TEMPLATES[label]
    folder = template_folder(template)
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(Awq2TrtError) as caught:
            chat_prompt(folder, MESSAGES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith("chat template: ") and "\n" not in message, message
    assert needle in message, message
    assert time.monotonic() - started < 10
    assert peak < 256 << 20, f"peak Python allocation {peak} bytes"


def test_a_real_chat_template_still_renders(template_folder: Callable[[str], Path]) -> None:
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{{ '<|assistant|>' * 1 }}"
    assert chat_prompt(template_folder(template), MESSAGES) == "<|user|>hi<|assistant|>"


def test_a_tokenizer_panic_is_one_line_on_stderr(tmp_path: Path) -> None:
    """The tokenizer library prints its own multi-line panic report on descriptor 2 before Python sees the panic;
    a real process must show only our error for it (the fuzzer's BPE-merges crasher)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    crasher = Path(__file__).parent / "fuzz" / "corpus" / "tokenizer" / "crash-bpe-merges-rust-panic"
    shutil.copyfile(crasher, folder / "tokenizer.json")
    script = (
        "import sys\nfrom pathlib import Path\nfrom awq2trt.errors import Awq2TrtError\n"
        "from awq2trt.runtime.text_model import load_tokenizer\n"
        "try:\n    load_tokenizer(Path(sys.argv[1]))\n"
        "except Awq2TrtError as e:\n    print('error:', e, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder / 'tokenizer.json'}: cannot be read"), done.stderr


def test_a_huge_tokenizer_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from awq2trt.runtime.text_model import MAX_TOKENIZER_BYTES, load_tokenizer

    path = tmp_path / "tokenizer.json"
    with path.open("wb") as sparse:
        sparse.truncate(MAX_TOKENIZER_BYTES + 1)  # a hole: no disk used
    with OpenAudit() as audit, pytest.raises(Awq2TrtError, match="expected a tokenizer file of at most 256 MB"):
        load_tokenizer(tmp_path)
    assert str(path) not in audit.opened
