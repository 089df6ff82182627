"""Benchmark prompts of three kinds, from text already on this machine (nothing is downloaded).

- `chat`: short questions a user would ask an assistant (general knowledge, how-to, explain-this), written here as
  data. Rendered with the tokenizer's chat template when it has one.
- `grounded`: tasks whose answer copies or edits text given in the prompt, the case prompt lookup is for. Four tasks
  in turn: repeat a function exactly, fix the spelling of a text (typos put in deterministically), rewrite a function
  with type hints, answer by quoting a document. Code comes from the Python standard library's source; prose from
  `/usr/share/common-licenses`, the README / .md / .txt / .rst files under `/usr/share/doc` (gzipped or not) and the
  standard library's module docstrings. Each rendered prompt is `min_tokens`..`max_tokens` tokens (200-500).
- `random`: uniformly random ordinary token ids of the model's vocabulary, fed as ids (no chat template): the
  adversarial case, where no drafter can guess anything.

Everything is deterministic for a given `seed` on a given machine (same files, same tokenizer). Each kind has two
disjoint splits, `dev` (for tuning) and `test` (for reports): chat questions by a hash of the question, grounded
prompts by a hash of the source file (a file's text never serves both splits), random prompts by separate seeded
streams. User prompts come from `read_prompts_file` (one per line, or JSONL `{"prompt": ..., "kind": ...}`).

Import-light on purpose (standard library only): `optimum-cli dynexec benchmark` reads a prompts file at argument
checking time, before any heavy import.
"""

import ast
import gzip
import hashlib
import json
import random
import re
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

BUILTIN_KINDS = ("chat", "grounded", "random")
SPLITS = ("dev", "test")
USER_KIND = "custom"
GROUNDED_TASKS = ("repeat_code", "fix_spelling", "type_hints", "quote_document")
RANDOM_PROMPT_TOKENS = 128
GROUNDED_MIN_TOKENS, GROUNDED_MAX_TOKENS = 200, 500

LICENSES_DIR = Path("/usr/share/common-licenses")
DOC_DIR = Path("/usr/share/doc")

CHAT_QUESTIONS = (
    "What is the capital of Australia?",
    "Why is the sky blue?",
    "How do I make a good cup of green tea?",
    "Explain what a hash table is and when I should use one.",
    "What causes the seasons on Earth?",
    "How can I improve my sleep?",
    "Explain the difference between a virus and a bacterium.",
    "What is photosynthesis?",
    "How do I center a div in CSS?",
    "Explain recursion to a beginner programmer.",
    "What are the main causes of inflation?",
    "How do I write a good cover letter?",
    "Who wrote Pride and Prejudice, and what is it about?",
    "What is the difference between weather and climate?",
    "How does a refrigerator keep food cold?",
    "Explain what an API is in simple terms.",
    "What is the Pythagorean theorem?",
    "How do I remove a screw with a stripped head?",
    "What are some tips for learning a new language?",
    "Explain how vaccines work.",
    "What is the difference between RAM and disk storage?",
    "How should I prepare for a job interview?",
    "Why do cats purr?",
    "Explain the difference between a list and a tuple in Python.",
    "Why does water boil at a lower temperature in the mountains?",
    "How do I start running if I have never exercised?",
    "What is machine learning?",
    "Explain what a mortgage is.",
    "How do airplanes stay in the air?",
    "What is the difference between an alligator and a crocodile?",
    "How can I reduce the energy use of my home?",
    "Explain what Git branches are for.",
    "What were the main causes of the First World War?",
    "How do I bake bread at home without a bread machine?",
    "What is the greenhouse effect?",
    "Explain Big O notation with an example.",
    "How do I politely decline an invitation?",
    "What is the difference between latitude and longitude?",
    "Why does the Moon have phases?",
    "How do I back up the photos on my phone?",
    "Explain what DNS does when I open a website.",
    "What are prime numbers, and why do they matter in cryptography?",
    "How do I care for a houseplant that is losing its leaves?",
    "What is the difference between stocks and bonds?",
    "Explain how a compiler differs from an interpreter.",
    "What should I pack for a three-day hiking trip?",
    "Summarize the plot of Romeo and Juliet in a few sentences.",
    "How does compound interest work?",
    "What is the speed of light, and why can nothing travel faster?",
    "Give me three ideas for a healthy breakfast.",
    "How do I convert Celsius to Fahrenheit?",
    "What does a CPU cache do?",
)

_GROUNDED_TEMPLATES = {
    "repeat_code": "Repeat this code exactly, without changing anything:\n\n```python\n{text}\n```",
    "fix_spelling": "Fix the spelling mistakes in this text. Reply with the corrected text only.\n\n{text}",
    "type_hints": "Rewrite this function with type hints. Keep everything else exactly the same.\n\n"
                  "```python\n{text}\n```",
    "quote_document": "Answer by quoting the document word for word.\n\nDocument:\n\"\"\"\n{text}\n\"\"\"\n\n"
                      "Question: which sentence of the document mentions \"{word}\"? Quote it exactly.",
}
# Files under /usr/share/doc that are mostly lists of changes or license boilerplate repeated by every package.
_SKIPPED_DOC_NAMES = ("changelog", "news", "copyright", "changes", "history", "authors", "thanks", "todo")
_DOC_SUFFIXES = (".md", ".txt", ".rst", ".markdown")
_TEST_FOLDERS = {"test", "tests", "idle_test"}
_MAX_SOURCE_BYTES = 1 << 20


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One benchmark prompt: `text` (a user message, rendered with the chat template unless `raw`) or `token_ids`
    (fed as they are), its `kind`, the `task` it poses and the `source` of its text."""

    kind: str
    text: Optional[str] = None
    token_ids: Optional[Tuple[int, ...]] = None
    task: str = ""
    source: str = ""
    raw: bool = False

    def __post_init__(self):
        if (self.text is None) == (self.token_ids is None):
            raise ValueError("A BenchmarkPrompt holds either `text` or `token_ids`, not both or neither.")


def stable_hash(text: str) -> int:
    """A hash of `text` that is the same in every process (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_of(key: str) -> str:
    """The split ("dev" or "test") a prompt source belongs to, decided by its key alone."""
    return SPLITS[stable_hash(key) % 2]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use 'dev' (for tuning) or 'test' (for reports).")


def _check_count(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count={count!r} must be a positive integer.")


# --------------------------------------------------------------------------------------------------- encoding


def encode_prompt(prompt: BenchmarkPrompt, tokenizer) -> List[int]:
    """The token ids every mode is fed: `token_ids` as given; `text` rendered as a user turn with the tokenizer's chat
    template (`add_generation_prompt=True`) when it has one and the prompt is not `raw`, else tokenized as it is."""
    if prompt.token_ids is not None:
        return list(prompt.token_ids)
    if not prompt.raw and getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt.text}], tokenize=False,
                                                 add_generation_prompt=True)
        # The template writes its special tokens as text; tokenizing it must not add another BOS.
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt.text)["input_ids"])


# --------------------------------------------------------------------------------------------------- chat


def chat_prompts(count: int, split: str = "test", seed: int = 0) -> List[BenchmarkPrompt]:
    """`count` chat questions of `split`, in an order drawn with `seed`."""
    _check_count(count)
    _check_split(split)
    questions = [question for question in CHAT_QUESTIONS if split_of(question) == split]
    if count > len(questions):
        raise ValueError(f"Only {len(questions)} built-in chat questions are in the {split!r} split; ask for at most "
                         f"that many, or pass your own with a prompts file.")
    random.Random(f"chat-{split}-{seed}").shuffle(questions)
    return [BenchmarkPrompt("chat", question, task="question", source="lab.benchmark.prompt_sets")
            for question in questions[:count]]


# --------------------------------------------------------------------------------------------------- random


def ordinary_token_ids(tokenizer, vocab_size: Optional[int] = None) -> List[int]:
    """Token ids of the vocabulary that are not special or added tokens (below `vocab_size` when given: a model's
    embedding can be larger or smaller than its tokenizer)."""
    size = len(tokenizer) if vocab_size is None else min(len(tokenizer), vocab_size)
    excluded = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return [token_id for token_id in range(size) if token_id not in excluded]


def random_prompts(count: int, tokenizer, split: str = "test", seed: int = 0, length: int = RANDOM_PROMPT_TOKENS,
                   vocab_size: Optional[int] = None) -> List[BenchmarkPrompt]:
    """`count` prompts of `length` uniformly random ordinary token ids (fed as ids, no chat template)."""
    _check_count(count)
    _check_split(split)
    if length < 1:
        raise ValueError(f"length={length} must be at least 1.")
    ids = ordinary_token_ids(tokenizer, vocab_size)
    if not ids:
        raise ValueError("The tokenizer has no ordinary (non-special) token ids to draw random prompts from.")
    rng = random.Random(f"random-{split}-{seed}")
    return [BenchmarkPrompt("random", token_ids=tuple(rng.choice(ids) for _ in range(length)), task="random_tokens",
                            source=f"random ids, split {split}, seed {seed}", raw=True) for _ in range(count)]


# --------------------------------------------------------------------------------------------------- grounded sources


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(split: str) -> List[Tuple[str, Path]]:
    """(key, path) of the standard library's .py files of `split`, test folders and site-packages excluded."""
    root = _stdlib_root()
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if {"site-packages", "dist-packages"} & set(relative.parts) or _TEST_FOLDERS & set(relative.parts[:-1]):
            continue
        if relative.name.startswith("test_"):
            continue
        key = f"stdlib:{relative.as_posix()}"
        if split_of(key) == split:
            files.append((key, path))
    return files


def _prose_files(split: str, stdlib_files: Sequence[Tuple[str, Path]]) -> List[Tuple[str, Path]]:
    """(key, path) of the prose sources of `split`: license texts, package documentation, and standard library
    modules (whose module docstring is the text)."""
    sources = []
    seen = set()
    if LICENSES_DIR.is_dir():
        for path in sorted(LICENSES_DIR.iterdir()):
            if path.is_file() and path.resolve() not in seen:  # GPL -> GPL-3 and the like are links
                seen.add(path.resolve())
                sources.append((f"license:{path.name}", path))
    if DOC_DIR.is_dir():
        for path in sorted(DOC_DIR.rglob("*")):
            name = path.name.lower()
            stem = name[:-3] if name.endswith(".gz") else name
            if (not path.is_file() or path.is_symlink() or any(stem.startswith(skip) for skip in _SKIPPED_DOC_NAMES)
                    or not (stem.startswith("readme") or stem.endswith(_DOC_SUFFIXES))):
                continue
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            sources.append((f"doc:{path.relative_to(DOC_DIR).as_posix()}", path))
    sources = [(key, path) for key, path in sources if split_of(key) == split]
    # A module's docstring belongs to the module's split, like its code.
    sources.extend((key.replace("stdlib:", "stdlib-docstring:", 1), path) for key, path in stdlib_files)
    return sources


def _read_text(path: Path) -> Optional[str]:
    try:
        if path.stat().st_size > _MAX_SOURCE_BYTES:
            return None
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def _prose_paragraphs(key: str, path: Path) -> List[str]:
    """The paragraphs of a prose source that read as running text (not code, tables or lists of names)."""
    if key.startswith("stdlib-docstring:"):
        source = _read_text(path)
        try:
            text = ast.get_docstring(ast.parse(source)) if source else None
        except (SyntaxError, ValueError):
            text = None
    else:
        text = _read_text(path)
    if not text:
        return []
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.rstrip() for line in block.strip("\n").split("\n")]
        paragraph = "\n".join(lines).strip()
        letters = sum(character.isalpha() or character.isspace() for character in paragraph)
        if len(paragraph) >= 80 and letters >= 0.85 * len(paragraph) and len(re.findall(r"[a-z]{3,}", paragraph)) >= 12:
            paragraphs.append(paragraph)
    return paragraphs


def _functions(path: Path, require_unannotated: bool) -> List[Tuple[str, str]]:
    """(qualified name, dedented source) of every function in a file; with `require_unannotated`, only functions
    without any annotation and with at least one argument besides self/cls."""
    source = _read_text(path)
    if not source:
        return []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.split("\n")
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                arguments = child.args.posonlyargs + child.args.args + child.args.kwonlyargs
                annotated = child.returns is not None or any(argument.annotation is not None for argument in arguments)
                real_arguments = [argument for argument in arguments if argument.arg not in ("self", "cls")]
                if not require_unannotated or (not annotated and real_arguments):
                    start = min([child.lineno] + [decorator.lineno for decorator in child.decorator_list]) - 1
                    segment = textwrap.dedent("\n".join(lines[start:child.end_lineno])).strip("\n")
                    found.append((name, segment))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


_WORD = re.compile(r"\b[A-Za-z]{5,}\b")


def add_typos(text: str, key: str, seed: int = 0) -> Tuple[str, int]:
    """`text` with about one word in 20 (at least 3, at most 15) misspelled: two inner letters swapped, a letter
    dropped or doubled. Deterministic for (`text`, `key`, `seed`); returns the text and the number of typos."""
    rng = random.Random(f"typos-{key}-{seed}")
    words = list(_WORD.finditer(text))
    if not words:
        return text, 0
    chosen = sorted(rng.sample(range(len(words)), min(len(words), max(3, min(15, len(words) // 20)))))
    pieces, cursor, typos = [], 0, 0
    for index in chosen:
        match = words[index]
        word = match.group()
        position = rng.randrange(1, len(word) - 2)
        operation = rng.choice(("swap", "drop", "double"))
        if operation == "swap" and word[position] != word[position + 1]:
            typo = word[:position] + word[position + 1] + word[position] + word[position + 2:]
        elif operation == "drop":
            typo = word[:position] + word[position + 1:]
        else:
            typo = word[:position] + word[position] + word[position:]
        pieces.append(text[cursor:match.start()] + typo)
        cursor = match.end()
        typos += 1
    pieces.append(text[cursor:])
    return "".join(pieces), typos


def _quote_question(text: str, rng: random.Random) -> Optional[str]:
    """A word that occurs exactly once in `text`, taken from a sentence after the first: the question asks to
    quote the sentence that holds it."""
    counts: Dict[str, int] = {}
    for word in re.findall(r"[A-Za-z]{6,}", text):
        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    sentences = re.split(r"(?<=[.!?])\s+", text)
    candidates = [word for sentence in sentences[1:] for word in re.findall(r"[A-Za-z]{6,}", sentence)
                  if counts[word.lower()] == 1]
    return rng.choice(candidates) if candidates else None


class _GroundedBuilder:
    """Draws grounded prompts of one split: one prompt per source file, files in a seeded order."""

    def __init__(self, tokenizer, split: str, seed: int, min_tokens: int, max_tokens: int):
        self.tokenizer, self.split, self.seed = tokenizer, split, seed
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.rng = random.Random(f"grounded-{split}-{seed}")
        code_files = _stdlib_files(split)
        prose_files = _prose_files(split, code_files)
        self.code_files = list(code_files)
        self.rng.shuffle(self.code_files)
        self.prose_files = prose_files
        self.rng.shuffle(self.prose_files)
        self._code_cursor = iter(self.code_files)
        self._prose_cursor = iter(self.prose_files)

    def tokens(self, task: str, text: str, word: str = "") -> int:
        prompt = BenchmarkPrompt("grounded", _GROUNDED_TEMPLATES[task].format(text=text, word=word))
        return len(encode_prompt(prompt, self.tokenizer))

    def fits(self, count: int) -> bool:
        return self.min_tokens <= count <= self.max_tokens

    def code_prompt(self, task: str) -> Optional[BenchmarkPrompt]:
        for key, path in self._code_cursor:
            functions = _functions(path, require_unannotated=task == "type_hints")
            self.rng.shuffle(functions)
            for name, code in functions:
                if self.fits(self.tokens(task, code)):
                    return BenchmarkPrompt("grounded", _GROUNDED_TEMPLATES[task].format(text=code), task=task,
                                           source=f"{key}:{name}")
        return None

    def prose_prompt(self, task: str) -> Optional[BenchmarkPrompt]:
        for key, path in self._prose_cursor:
            paragraphs = _prose_paragraphs(key, path)
            if not paragraphs:
                continue
            start = self.rng.randrange(len(paragraphs))
            text, chosen = "", None
            # Whole paragraphs from a seeded start, until the prompt reaches `min_tokens` without passing `max_tokens`.
            for paragraph in paragraphs[start:]:
                candidate = f"{text}\n\n{paragraph}" if text else paragraph
                prepared, word = self._prepare(task, key, candidate)
                if prepared is None:
                    text = candidate
                    continue
                count = self.tokens(task, prepared, word)
                if count > self.max_tokens:
                    break
                text = candidate
                if count >= self.min_tokens:
                    chosen = (prepared, word)
                    break
            if chosen is not None:
                prepared, word = chosen
                return BenchmarkPrompt("grounded", _GROUNDED_TEMPLATES[task].format(text=prepared, word=word),
                                       task=task, source=key)
        return None

    def _prepare(self, task: str, key: str, text: str):
        if task == "fix_spelling":
            with_typos, typos = add_typos(text, key, self.seed)
            return (with_typos, "") if typos else (None, "")
        word = _quote_question(text, random.Random(f"quote-{key}-{self.seed}"))
        return (text, word) if word else (None, "")


def grounded_prompts(count: int, tokenizer, split: str = "test", seed: int = 0, min_tokens: int = GROUNDED_MIN_TOKENS,
                     max_tokens: int = GROUNDED_MAX_TOKENS) -> List[BenchmarkPrompt]:
    """`count` grounded prompts of `split`, the four tasks of `GROUNDED_TASKS` in turn, each `min_tokens`..`max_tokens`
    tokens once rendered for `tokenizer` (with its chat template, as the benchmark feeds them)."""
    _check_count(count)
    _check_split(split)
    if not 0 < min_tokens <= max_tokens:
        raise ValueError(f"min_tokens={min_tokens}, max_tokens={max_tokens}: need 0 < min_tokens <= max_tokens.")
    builder = _GroundedBuilder(tokenizer, split, seed, min_tokens, max_tokens)
    prompts = []
    for index in range(count):
        task = GROUNDED_TASKS[index % len(GROUNDED_TASKS)]
        prompt = builder.code_prompt(task) if task in ("repeat_code", "type_hints") else builder.prose_prompt(task)
        if prompt is None:
            raise ValueError(f"Found only {len(prompts)} grounded prompts of {min_tokens}-{max_tokens} tokens in the "
                             f"{split!r} split on this machine; ask for fewer, or pass your own with a prompts file.")
        prompts.append(prompt)
    return prompts


# --------------------------------------------------------------------------------------------------- sets and files


def builtin_prompts(kinds: Sequence[str] = BUILTIN_KINDS, count: int = 8, tokenizer=None, split: str = "test",
                    seed: int = 0, vocab_size: Optional[int] = None) -> Dict[str, List[BenchmarkPrompt]]:
    """`count` built-in prompts of each kind in `kinds` ("chat", "grounded", "random"), of `split`, drawn with `seed`.

    `tokenizer` (the model's) sizes the grounded prompts and gives the random prompts' vocabulary (`vocab_size`, the
    model's, caps it)."""
    _check_split(split)
    prompts = {}
    for kind in kinds:
        if kind == "chat":
            prompts[kind] = chat_prompts(count, split, seed)
        elif kind in ("grounded", "random"):
            if tokenizer is None:
                raise ValueError(f"The {kind!r} prompts need the model's tokenizer.")
            prompts[kind] = (grounded_prompts(count, tokenizer, split, seed) if kind == "grounded"
                             else random_prompts(count, tokenizer, split, seed, vocab_size=vocab_size))
        else:
            raise ValueError(f"Unknown prompt kind {kind!r}; the built-in kinds are {', '.join(BUILTIN_KINDS)}.")
    return prompts


def read_prompts_file(path, kinds: Optional[Sequence[str]] = None,
                      count: Optional[int] = None) -> Dict[str, List[BenchmarkPrompt]]:
    """A user's prompts: one per line (kind "custom"), or JSON lines `{"prompt": "...", "kind": "..."}` (kind
    optional, default "custom"; `"raw": true` feeds the text without the chat template). A file whose first
    non-blank line starts with `{`, or named `*.jsonl`, is read as JSON lines. Blank lines are skipped.

    `kinds` keeps only those kinds, `count` at most that many prompts of each (the first ones). Raises `ValueError`
    naming the file (and line) when it is missing, malformed or holds no prompt.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"Prompts file {path} does not exist (or is not a file).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"Prompts file {path} cannot be read as UTF-8 text ({error}).") from error
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ValueError(f"Prompts file {path} holds no prompts (it is empty or blank).")
    is_jsonl = path.suffix.lower() == ".jsonl" or lines[0][1].lstrip().startswith("{")
    prompts: Dict[str, List[BenchmarkPrompt]] = {}
    for number, line in lines:
        if is_jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}).") from error
            prompt_text = record.get("prompt") if isinstance(record, dict) else None
            if not isinstance(prompt_text, str) or not prompt_text.strip():
                raise ValueError(f"{path}, line {number}: each line must be an object with a non-empty string "
                                 "\"prompt\" (and optionally \"kind\", \"raw\").")
            kind = record.get("kind", USER_KIND)
            if not isinstance(kind, str) or not kind.strip():
                raise ValueError(f"{path}, line {number}: \"kind\" must be a non-empty string.")
            raw = record.get("raw", False)
            if not isinstance(raw, bool):
                raise ValueError(f"{path}, line {number}: \"raw\" must be true or false.")
            prompt = BenchmarkPrompt(kind.strip(), record["prompt"], task="user", source=f"{path.name}:{number}",
                                     raw=raw)
        else:
            prompt = BenchmarkPrompt(USER_KIND, line, task="user", source=f"{path.name}:{number}")
        prompts.setdefault(prompt.kind, []).append(prompt)
    if kinds is not None:
        missing = [kind for kind in kinds if kind not in prompts]
        if missing:
            raise ValueError(f"Prompts file {path} holds no prompts of kind {', '.join(map(repr, missing))} (it has "
                             f"{', '.join(map(repr, prompts))}).")
        prompts = {kind: prompts[kind] for kind in kinds}
    if count is not None:
        _check_count(count)
        prompts = {kind: items[:count] for kind, items in prompts.items()}
    return prompts
