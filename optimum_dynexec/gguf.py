"""GGUF files (llama.cpp's format) as model input: a `.gguf` becomes an ordinary transformers checkpoint folder.

`checkpoint_for_gguf("m.gguf")` converts once and caches the folder; everything downstream (optimum-intel's export,
`OVSpeculativeModelForCausalLM.from_pretrained(..., export=True)`) then reads a plain folder. The conversion:

- **weights and config**: transformers' own GGUF loader (`AutoModelForCausalLM.from_pretrained(folder,
  gguf_file=name)`), which dequantizes every tensor to f32 and undoes llama.cpp's q/k row permutation;
- **tokenizer**: built here from the GGUF's own vocabulary, merges, pre-tokenizer type, special tokens and chat
  template. transformers' GGUF tokenizer conversion is not used: on a byte-level BPE GGUF such as SmolLM2's it
  builds a `CodeLlamaTokenizer` that prepends a spurious BOS, decodes to `Ġ`-strings and, once saved and
  reloaded, puts `<|endoftext|>` between words.

Supported: GGUF architectures `llama`, `qwen2` and `qwen3` with a byte-level BPE tokenizer (`tokenizer.ggml.model ==
"gpt2"`, which is what llama.cpp writes for every Hugging Face BPE tokenizer: SmolLM, Llama 3, Qwen 2/2.5/3, ...).
Anything else is refused with a `ValueError` that says what was found; nothing is converted approximately.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from .utils.io import atomic_directory

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3")
GGUF_MAGIC = b"GGUF"
# Bumped whenever the conversion writes different files for the same GGUF; a cached checkpoint written by another
# version is converted again.
CONVERTER_VERSION = 1
SOURCE_FILE = "gguf_source.json"  # written last into each cached checkpoint: which GGUF it came from, and how

# llama.cpp's token types (`gguf.TokenType`): CONTROL tokens are the tokenizer's special tokens, USER_DEFINED its
# added non-special tokens; both must match as whole strings before BPE ever sees the text.
_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4
_SPECIAL_SHAPE = re.compile(r"^<\|.*\|>$")

# The pre-tokenizer of each `tokenizer.ggml.pre` value, as the original tokenizer.json has it (llama.cpp keeps one
# regex list per value in `llama-vocab.cpp`; these are the same splits in `tokenizers`' terms).
_GPT2_SPLIT = "gpt2"  # the GPT-2 regex that `pre_tokenizers.ByteLevel(use_regex=True)` applies
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
    r"|\s+"
)
_PRE_TOKENIZERS = {
    # value: (split regex or _GPT2_SPLIT, each digit its own piece, NFC-normalise, BPE ignores merges for whole words)
    "gpt-2": (_GPT2_SPLIT, False, False, False),
    "smollm": (_GPT2_SPLIT, True, False, False),  # SmolLM / SmolLM2: StarCoder's tokenizer
    "starcoder": (_GPT2_SPLIT, True, False, False),
    "refact": (_GPT2_SPLIT, True, False, False),
    "qwen2": (_QWEN2_REGEX, False, True, False),  # Qwen 2, 2.5 and 3
    "llama-bpe": (_LLAMA3_REGEX, False, False, True),  # Llama 3.x
}


# ---------------------------------------------------------------------------------------------------- recognising


def is_gguf(model_id: Union[str, os.PathLike, None]) -> bool:
    """Whether `model_id` names a GGUF file rather than a folder or a hub id.

    True for any path ending in `.gguf` (existing or not, so that a mistyped path ends in `checkpoint_for_gguf`'s
    clear "not found" error instead of a hub lookup) and for an existing file that starts with the GGUF magic bytes.
    """
    if model_id is None or not isinstance(model_id, (str, os.PathLike)):
        return False
    path = Path(model_id)
    if path.suffix.lower() == ".gguf":
        return not path.is_dir()
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as file:
            return file.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _check_file(path: Path) -> None:
    """A `ValueError` unless `path` is an existing file that starts with the GGUF magic bytes."""
    if not path.is_file():
        raise ValueError(f"GGUF file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, a GGUF file with {GGUF_MAGIC!r}).")


def _open_gguf(gguf_path: Union[str, os.PathLike]):
    """A `gguf.GGUFReader` for the file, or a `ValueError` that says why the file cannot be one."""
    path = Path(gguf_path)
    _check_file(path)
    try:
        from gguf import GGUFReader
    except ImportError as error:
        raise ImportError("Reading a .gguf file needs the `gguf` package: pip install gguf") from error
    try:
        return GGUFReader(path)
    except Exception as error:  # a truncated or corrupt file fails deep inside numpy's memmap
        raise ValueError(f"{path} could not be read as a GGUF file: {error}") from error


def _field(reader, key: str, default: Any = None) -> Any:
    """One metadata value: a Python scalar, str, or list for arrays (works with every gguf-py release >= 0.10)."""
    from gguf import GGUFValueType

    field = reader.fields.get(key)
    if field is None:
        return default
    element_type = field.types[-1]

    def parse(part):
        if element_type == GGUFValueType.STRING:
            return bytes(part).decode("utf-8")
        value = part.tolist()[0]
        return bool(value) if element_type == GGUFValueType.BOOL else value

    values = [parse(field.parts[index]) for index in field.data]
    return values if field.types[0] == GGUFValueType.ARRAY else values[0]


def _architecture(reader, path: Path) -> str:
    architecture = _field(reader, "general.architecture")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{path.name}: GGUF architecture {architecture!r} is not supported; supported architectures: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}."
        )
    # llama.cpp stores Llama 3.1+'s frequency-dependent RoPE scaling as a `rope_freqs` tensor that transformers' GGUF
    # loader ignores: the converted model would compute different logits at every position, so refuse it.
    if any(tensor.name == "rope_freqs.weight" for tensor in reader.tensors):
        raise ValueError(
            f"{path.name}: this GGUF carries per-frequency RoPE factors (`rope_freqs.weight`, Llama 3.1+ RoPE scaling) "
            "that transformers' GGUF loader does not apply; the converted model would not match the original. Use "
            "the model's Hugging Face folder instead."
        )
    return architecture


# ------------------------------------------------------------------------------------------------------ tokenizer


def tokenizer_from_gguf(gguf_path: Union[str, os.PathLike]):
    """The GGUF's tokenizer as a `transformers.PreTrainedTokenizerFast` that encodes as llama.cpp does.

    Built from the file's own metadata: the byte-level BPE vocabulary and merges (`tokenizer.ggml.tokens` /
    `.merges`), the pre-tokenizer named by `tokenizer.ggml.pre`, its control and user-defined tokens as added tokens
    (special / not special), the bos / eos / unk / pad ids, whether a BOS (or EOS) is added
    (`tokenizer.ggml.add_bos_token`, `add_eos_token`; SmolLM2 and Qwen add none) and `tokenizer.chat_template`.
    Decoding the ids of any text gives the text back exactly.

    Raises `ValueError` for a missing or non-GGUF file, a tokenizer that is not byte-level BPE, or a pre-tokenizer
    this module does not know (rather than guessing one, which would give different ids).
    """
    path = Path(gguf_path)
    return _tokenizer_from_reader(_open_gguf(path), path)


def _tokenizer_from_reader(reader, path: Path):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(
            f"{path.name}: tokenizer type {kind!r} is not supported; only byte-level BPE GGUF tokenizers "
            "(tokenizer.ggml.model = 'gpt2') are converted."
        )
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise ValueError(
            f"{path.name}: pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; supported: "
            f"{', '.join(sorted(_PRE_TOKENIZERS))}."
        )
    split, individual_digits, nfc, ignore_merges = _PRE_TOKENIZERS[pre]

    tokens: List[str] = _field(reader, "tokenizer.ggml.tokens")
    token_types: List[int] = _field(reader, "tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    merges = [tuple(merge.split(" ", 1)) for merge in _field(reader, "tokenizer.ggml.merges", [])]
    if not tokens or not merges:
        raise ValueError(f"{path.name}: the GGUF has no BPE vocabulary or merges (tokenizer.ggml.tokens / .merges).")
    vocab = {token: index for index, token in enumerate(tokens)}

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    steps = []
    if individual_digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    if split == _GPT2_SPLIT:
        # GPT-2's own split, then bytes to the printable alphabet; no prefix space (SmolLM2, GPT-2 and llama.cpp
        # add none). trim_offsets only shapes character offsets, never ids.
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True))
    else:
        steps.append(pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False))
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False))
    tokenizer.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()

    # Added tokens keep their ids (their strings are already in the vocabulary). A `<|...|>` token is special even if
    # a converter typed it NORMAL: it is a marker, and must never be built out of pieces of ordinary text.
    added = []
    for index, (token, token_type) in enumerate(zip(tokens, token_types)):
        special = token_type == _CONTROL or bool(_SPECIAL_SHAPE.match(token))
        if special or token_type == _USER_DEFINED:
            added.append(AddedToken(token, special=special, normalized=False, lstrip=False, rstrip=False,
                                    single_word=False))
    tokenizer.add_tokens(added)

    def token_for(key: str) -> Optional[str]:
        index = _field(reader, f"tokenizer.ggml.{key}")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    bos, eos, unk, pad = (token_for(key) for key in ("bos_token_id", "eos_token_id", "unknown_token_id",
                                                     "padding_token_id"))
    # llama.cpp's defaults when the keys are absent: BPE vocabularies add a BOS, never an EOS.
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", True)) and bos is not None
    add_eos = bool(_field(reader, "tokenizer.ggml.add_eos_token", False)) and eos is not None
    single, pair, template_tokens = "$A:0", "$B:1", []
    if add_bos:
        single, pair = f"{bos}:0 {single}", f"{bos}:1 {pair}"
        template_tokens.append((bos, vocab[bos]))
    if add_eos:
        single, pair = f"{single} {eos}:0", f"{pair} {eos}:1"
        template_tokens.append((eos, vocab[eos]))
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=single, pair=f"{single} {pair}", special_tokens=template_tokens),
    ])

    architecture = _field(reader, "general.architecture")
    context_length = _field(reader, f"{architecture}.context_length")
    special_tokens = {name: value for name, value in
                      (("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)) if value}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        chat_template=_field(reader, "tokenizer.chat_template"),
        model_max_length=context_length or int(1e30),
        clean_up_tokenization_spaces=False,  # exact round trips: no " ." -> "." rewriting on decode
        **special_tokens,
    )


# ----------------------------------------------------------------------------------------------------- conversion


def gguf_to_checkpoint(gguf_path: Union[str, os.PathLike], output_dir: Union[str, os.PathLike], *,
                       progress: bool = True) -> Path:
    """Write a transformers checkpoint folder for a llama / qwen2 / qwen3 GGUF file and return its path.

    `output_dir` receives config.json, model.safetensors (f32, dequantized), generation_config.json, the tokenizer
    (`tokenizer_from_gguf`) and `gguf_source.json` (the GGUF's name, sha256 and the converter's version). The folder is
    written in a staging folder and moved into place in one step: an interrupted conversion leaves `output_dir` as it
    was. Weights and config come from transformers' GGUF loader; the tokenizer does not (see the module docstring).

    Raises `ValueError` for a missing file, a file that is not GGUF, another architecture (naming the one found and
    the supported ones) or an unsupported tokenizer.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    path = Path(os.path.abspath(gguf_path))  # not resolve(): a symlinked file keeps its own name
    output_dir = Path(output_dir)
    with tqdm(total=4, desc=f"GGUF {path.name}", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("reading GGUF")
        reader = _open_gguf(path)
        architecture = _architecture(reader, path)
        tokenizer = _tokenizer_from_reader(reader, path)  # refuses an unsupported tokenizer before the slow part
        overrides = _config_overrides(reader, architecture, tokenizer)
        sha256 = _sha256(path)
        del reader  # releases the memmap before transformers opens the file again
        bar.update()

        bar.set_postfix_str("dequantizing weights")
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                     **overrides)
        _set_generation_tokens(model, tokenizer)
        bar.update()

        with atomic_directory(output_dir) as staging:
            bar.set_postfix_str("writing checkpoint")
            model.save_pretrained(staging, safe_serialization=True)
            del model
            bar.update()

            bar.set_postfix_str("tokenizer")
            tokenizer.save_pretrained(staging)
            source = {"gguf_file": path.name, "sha256": sha256, "architecture": architecture,
                      **_converter_versions()}
            (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
            bar.update()
    return output_dir


def _config_overrides(reader, architecture: str, tokenizer) -> Dict[str, Any]:
    """Config values transformers' GGUF loader misses or gets wrong for these families."""
    overrides: Dict[str, Any] = {}
    # Qwen3 decouples the head size from hidden_size / heads (Qwen3-0.6B: 1024 / 16 heads, head_dim 128); transformers
    # maps `attention.key_length` only for the MoE variant, so the dense model would be built with the wrong shapes.
    head_dim = _field(reader, f"{architecture}.attention.key_length")
    if head_dim is not None:
        overrides["head_dim"] = head_dim
    # The token ids generation needs, from the same metadata the tokenizer used.
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name)
        if value is not None:
            overrides[name] = value
    return overrides


def _set_generation_tokens(model, tokenizer) -> None:
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    # In chunks: GGUF files run to many GB and need not fit in memory.
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------- caching


def gguf_cache_dir() -> Path:
    """Where converted GGUF checkpoints are cached: `$OPTIMUM_DYNEXEC_CACHE/gguf`, else `~/.cache/optimum-dynexec/gguf`."""
    root = os.environ.get("OPTIMUM_DYNEXEC_CACHE") or os.path.join(Path.home(), ".cache", "optimum-dynexec")
    return Path(root) / "gguf"


def checkpoint_for_gguf(gguf_path: Union[str, os.PathLike], cache_dir: Union[str, os.PathLike, None] = None, *,
                        progress: bool = True) -> Path:
    """The transformers checkpoint folder for a GGUF file, converted on first use and cached.

    The cache entry is `<cache_dir>/<first 16 hex digits of the file's sha256>-<file name stem>` (`cache_dir` defaults
    to `gguf_cache_dir()`), so the same content under another name or place is converted once, and a changed file is
    converted again. An entry written by another converter, transformers or gguf version is replaced. Concurrent callers wait for one
    conversion instead of each doing it. Raises the same `ValueError`s as `gguf_to_checkpoint`.
    """
    # abspath, not resolve(): a symlink (a hub-style cache points into blobs named by hash) keeps its readable name.
    path = Path(os.path.abspath(gguf_path))
    _check_file(path)  # a missing or non-GGUF file fails here with its clear error, before any hashing
    sha256 = _sha256(path)
    entry = Path(cache_dir) if cache_dir is not None else gguf_cache_dir()
    entry = entry / f"{sha256[:16]}-{path.stem}"
    if _is_current(entry, sha256):
        return entry
    with _lock(entry.parent / f".{entry.name}.lock"):
        if not _is_current(entry, sha256):  # another process may have finished it while this one waited
            gguf_to_checkpoint(path, entry, progress=progress)
    return entry


def _converter_versions() -> Dict[str, Any]:
    # What decides the converted files besides the GGUF itself: this converter, transformers' loader (config mapping,
    # dequantization, permutation) and gguf-py's dequantizer.
    return {"converter_version": CONVERTER_VERSION, "transformers": importlib.metadata.version("transformers"),
            "gguf": importlib.metadata.version("gguf")}


def _is_current(entry: Path, sha256: str) -> bool:
    try:
        source = json.loads((entry / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return source.get("sha256") == sha256 and all(source.get(key) == value
                                                  for key, value in _converter_versions().items())


@contextmanager
def _lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
