"""Training an EAGLE head for a target: generate the target's features on a text corpus, then fit the head.

As in the EAGLE paper (arXiv 2401.15077, section 4): the head reads the target's feature `f_i` and the token
`x_{i+1}`, and is trained with

    loss = feature_weight * SmoothL1(head(f_i, x_{i+1}), f_{i+1})
         + token_weight   * CrossEntropy(softmax(lm_head(f_{i+1})), log_softmax(lm_head(head(...))))

with uniform noise added to the input features, so the head tolerates its own (imperfect) predicted features
when it drafts several tokens ahead. `draft_steps > 1` trains on those predicted features directly instead
(`drafted_features`: the head's chain unrolled during training, EAGLE-3's "training-time test"). The target is
frozen; only `fc` and the decoder layer learn.

Self-distillation (`generated_tokens > 0`): the end of every window is replaced by the target's own greedy
continuation of the window's beginning (`self_distillation.py` says why). `chat_prompts` adds the target's own answers
to chat prompts (through its chat template) as training documents.

EAGLE-3 (`eagle3=True`, arXiv 2503.01840; `eagle3.py`): the store keeps the outputs of three target layers (the
head's input) and the target's last feature (what it predicts from), and the target's own next token; the draft
vocabulary is the `draft_vocab_size` tokens the target chooses most often in the training windows; the head is trained
on the target's next-token distribution restricted to that vocabulary (no feature regression), unrolled over
`draft_steps` drafting steps as the paper's training-time test does.

Both phases are resumable: features are written window by window into a float16 memory map under
`<output>/.eagle-work/` (with a count of finished windows), and training saves a checkpoint (head, optimizer,
step) every `checkpoint_steps`; running the same command again continues where it stopped. The finished head is
written in the published EAGLE format (`config.json` + `model.safetensors`) and the work folder removed.
"""

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...learning_rate import warmup_cosine
from ...utils.io import atomic_file, atomic_save_into, write_text_atomically
from ..draft_vocabulary import most_chosen_tokens
from ..self_distillation import chat_answers, greedy_continuation
from .eagle3 import Eagle3Head, default_feature_layers, eagle3_config_from_target
from .head import EagleHead, eagle_config_from_target, save_eagle_head


WORK_FOLDER = ".eagle-work"
VALIDATION_DRAFT_STEPS = 4
TRAINING_SUMMARY = "training_summary.json"


@dataclass
class EagleTrainingArguments:
    """How to generate features and train the head (defaults suit a ~30M target on a 2-core CPU).

    `max_windows` caps the number of `sequence_length`-token windows of text the target encodes; `epochs` passes
    are made over them. `generated_tokens` > 0 self-distils: the last `generated_tokens` tokens of each window are
    the target's greedy continuation of the rest (generated in float32, `generation_batch_size` windows at a time)
    instead of corpus text. `feature_weight` / `token_weight` weigh the regression and cross-entropy terms (the paper
    uses 1.0 / 0.1); `feature_noise` is the width of the uniform noise added to input features (the paper: 0.2).
    `draft_steps` > 1 also trains the head on its own predicted features, unrolled that many drafting steps
    (`drafted_features`), the situation of every drafted token after the first; each step costs about one more pass.
    `eagle3` trains an EAGLE-3 head instead: over a draft vocabulary of `draft_vocab_size` tokens (capped at the
    target's), fusing `feature_layers` (default `eagle3.default_feature_layers`). `answer_tokens` caps the target's
    answer to each chat prompt.
    """

    sequence_length: int = 512
    max_windows: Optional[int] = 2000
    epochs: float = 2.0
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    feature_weight: float = 1.0
    token_weight: float = 0.1
    feature_noise: float = 0.2
    checkpoint_steps: int = 100
    validation_windows: int = 16
    bf16_autocast: bool = True
    seed: int = 0
    generated_tokens: int = 0
    generation_batch_size: int = 64
    draft_steps: int = 1
    eagle3: bool = False
    draft_vocab_size: int = 8192
    feature_layers: Optional[Tuple[int, ...]] = None
    answer_tokens: int = 256

    def __post_init__(self):
        if not 1 <= self.draft_steps < self.sequence_length:
            raise ValueError(f"`draft_steps` must be in [1, sequence_length={self.sequence_length}), got "
                             f"{self.draft_steps}.")
        if not 0 <= self.generated_tokens < self.sequence_length:
            raise ValueError(f"`generated_tokens` must be in [0, sequence_length={self.sequence_length}), got "
                             f"{self.generated_tokens}: the target needs a prefix of the window to continue.")


def load_training_texts(dataset: Union[str, Path], split: str = "train", text_column: str = "text") -> List[str]:
    """Texts to train on: a `.txt` file (one document, or documents separated by blank-line-free form feeds),
    a `.json`/`.jsonl` file with a `text_column`, a folder of `.txt`/`.py`/`.md` files, or a `datasets` name."""
    path = Path(dataset)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".py", ".md") and p.is_file())
        if not files:
            raise ValueError(f"`dataset` folder {path} holds no .txt/.py/.md files.")
        return [p.read_text(encoding="utf-8", errors="replace") for p in files]
    if path.is_file():
        if path.suffix in (".json", ".jsonl"):
            lines = path.read_text(encoding="utf-8").splitlines() if path.suffix == ".jsonl" else None
            records = [json.loads(line) for line in lines if line.strip()] if lines is not None else json.loads(
                path.read_text(encoding="utf-8"))
            try:
                return [str(record[text_column]) for record in records]
            except (KeyError, TypeError):
                raise ValueError(f"`dataset` {path}: every record needs a {text_column!r} field (`--text-column`).")
        return [document for document in path.read_text(encoding="utf-8", errors="replace").split("\f")
                if document.strip()]
    try:
        import datasets
    except ImportError:
        raise ValueError(f"`dataset` {dataset!r} is not a file or folder, and the `datasets` package is not installed "
                         "to load it by name (pip install datasets).")
    loaded = datasets.load_dataset(str(dataset), split=split)
    if text_column not in loaded.column_names:
        raise ValueError(f"`dataset` {dataset!r} has no column {text_column!r}; pick one of {loaded.column_names} "
                         "with `--text-column`.")
    return [str(text) for text in loaded[text_column]]


def load_chat_prompts(path: Union[str, Path]) -> List[str]:
    """Chat prompts from a `.txt` file (one per line) or a `.jsonl` file (a `prompt` field per record)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`chat_prompts` file {path} does not exist: pass a .txt file (one prompt per line) or a "
                         ".jsonl file with a `prompt` field.")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    try:
        return [str(json.loads(line)["prompt"]) for line in lines]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"`chat_prompts` file {path}: every line must be a JSON object with a `prompt` field "
                         f"({error}).")


def token_windows(tokenizer, texts: Sequence[str], length: int, max_windows: Optional[int], seed: int) -> np.ndarray:
    """`[windows, length]` token ids: the texts (in a seeded order, EOS between documents) cut into windows."""
    eos = tokenizer.eos_token_id
    rng = np.random.default_rng(seed)
    # Documents in a seeded random order, tokenized in batches until there is enough text for `max_windows`.
    needed = None if max_windows is None else max_windows * length
    pieces, tokens, batch = [], 0, 64
    order = rng.permutation(len(texts))
    for start in range(0, len(order), batch):
        encoded = tokenizer([texts[i] for i in order[start : start + batch]], add_special_tokens=False)["input_ids"]
        for ids in encoded:
            pieces.append(np.asarray(ids + ([eos] if eos is not None else []), dtype=np.int64))
            tokens += len(pieces[-1])
        if needed is not None and tokens >= needed:
            break
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    count = len(stream) // length
    if count < 2:
        raise ValueError(f"The training text holds {len(stream)} tokens, fewer than two windows of "
                         f"sequence_length={length}; give more text or a smaller `sequence_length`.")
    windows = stream[: count * length].reshape(count, length)
    order = rng.permutation(count)
    if max_windows is not None:
        order = order[:max_windows]
    return windows[order]


class FeatureStore:
    """The target's features for each training window, in float16 memory maps, filled resumably."""

    def __init__(self, folder: Path, windows: np.ndarray, hidden_size: int, generated_tokens: int = 0,
                 with_choices: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        count, length = windows.shape
        meta_path = folder / "features.json"
        meta = {"windows": count, "length": length, "hidden_size": hidden_size, "generated_tokens": generated_tokens,
                "tokens_checksum": int(windows[:, :8].sum() % 1_000_000_007)}
        previous = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        fresh = previous is None or {k: previous.get(k) for k in meta} != meta
        mode = "w+" if fresh else "r+"
        self.tokens = np.lib.format.open_memmap(folder / "tokens.npy", mode=mode, dtype=np.int64, shape=windows.shape)
        self.features = np.lib.format.open_memmap(folder / "features.npy", mode=mode, dtype=np.float16,
                                                  shape=(count, length, hidden_size))
        # The target's own next token at every position (EAGLE-3: which tokens the draft vocabulary needs).
        self.choices = np.lib.format.open_memmap(folder / "choices.npy", mode=mode, dtype=np.int32,
                                                 shape=(count, length)) if with_choices else None
        if fresh:
            self.tokens[:] = windows
            self.tokens.flush()
            meta["done"] = 0
            _write_json(meta_path, meta)
        self.meta_path = meta_path
        self.done = json.loads(meta_path.read_text())["done"]

    def mark_done(self, done: int) -> None:
        self.features.flush()
        if self.choices is not None:
            self.choices.flush()
        meta = json.loads(self.meta_path.read_text())
        meta["done"] = done
        _write_json(self.meta_path, meta)
        self.done = done


@torch.no_grad()
def generate_features(target, store: FeatureStore, batch_size: int, bf16_autocast: bool, progress: bool,
                      generated_tokens: int = 0, feature_layers: Optional[Sequence[int]] = None) -> None:
    """Run the target over every window not done yet and store its last hidden state (after the final norm).

    With `feature_layers` (EAGLE-3), store those decoder layers' outputs side by side before the last hidden state,
    and the target's argmax token in `store.choices`. With `generated_tokens`, each window's last `generated_tokens`
    tokens are first replaced by the target's greedy continuation of the window's beginning (written back to
    `store.tokens`, so a resumed run keeps them)."""
    decoder = target.get_decoder()
    total = len(store.tokens)
    description = "target continuations + features" if generated_tokens else "target features"
    bar = tqdm(total=total, initial=store.done, desc=description, unit="window", disable=not progress)
    while store.done < total:
        end = min(store.done + batch_size, total)
        ids = torch.from_numpy(np.asarray(store.tokens[store.done : end]))
        if generated_tokens:
            ids = greedy_continuation(target, ids[:, :-generated_tokens], generated_tokens)
            store.tokens[store.done : end] = ids.numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            if feature_layers is None:
                hidden = decoder(input_ids=ids).last_hidden_state
            else:
                layers, hidden = layer_outputs(decoder, ids, feature_layers)
                store.choices[store.done : end] = target.lm_head(hidden).argmax(-1).numpy()
                hidden = torch.cat([layers, hidden], dim=-1)
        store.features[store.done : end] = hidden.float().numpy().astype(np.float16)
        bar.update(end - store.done)
        store.mark_done(end)
    bar.close()


def layer_outputs(decoder, ids: torch.Tensor, layers: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """`(the outputs of these decoder layers side by side, the last hidden state)` for `ids`.

    Caught by hooks on the layers, because transformers' `hidden_states[i + 1]` is layer `i`'s output except for the
    last layer (after the final norm there); the OpenVINO target reads the same points (`graphs.decoder_layer_outputs`)."""
    caught, hooks = {}, []
    for layer in set(layers):
        def catch(module, args, output, layer=layer):
            caught[layer] = output[0] if isinstance(output, tuple) else output
        hooks.append(decoder.layers[layer].register_forward_hook(catch))
    try:
        hidden = decoder(input_ids=ids).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([caught[layer] for layer in layers], dim=-1), hidden


def _causal_mask(length: int) -> torch.Tensor:
    mask = torch.full((length, length), torch.finfo(torch.float32).min).triu(1)
    return mask[None, None]


class DraftingCache:
    """A KV cache for the torch head (what its decoder layer calls `update` on): keeps every step's keys/values (with
    their gradients), so a later drafting step attends to the rows earlier steps computed, as the exported head's KV
    cache does when it drafts. `drafted_features` unrolls drafting with it; pass one to `EagleHead.forward` to draft
    step by step in torch."""

    def __init__(self):
        self.key = self.value = None

    def update(self, key, value, layer_idx=0, cache_kwargs=None):
        if self.key is not None:
            key = torch.cat([self.key, key.to(self.key.dtype)], dim=-2)
            value = torch.cat([self.value, value.to(self.value.dtype)], dim=-2)
        self.key, self.value = key, value
        return key, value

    def get_seq_length(self, layer_idx=0):
        return 0 if self.key is None else self.key.shape[-2]


def _drafting_step_mask(rows: int, earlier_step_rows: Sequence[int]) -> torch.Tensor:
    """Additive mask of drafting step `s = len(earlier_step_rows) + 1` over the keys of steps 1..s.

    Row `i` of every step belongs to the chain rooted at exact pair `i`: at step `s` it sees the exact pairs
    `0..i` (step 1's rows) and the rows of its own chain at steps 2..s, i.e. row `i` of each, itself included.
    """
    blocks = [torch.tril(torch.ones(rows, earlier_step_rows[0], dtype=torch.bool))]
    for count in list(earlier_step_rows[1:]) + [rows]:
        blocks.append(torch.eye(rows, count, dtype=torch.bool))
    allowed = torch.cat(blocks, dim=1)
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]


def drafted_features(head: EagleHead, tokens: torch.Tensor, features: torch.Tensor, draft_steps: int = 1,
                     noise: float = 0.0) -> List[torch.Tensor]:
    """The head's predicted features at each of `draft_steps` drafting steps, for every root of the windows.

    Step 1 is the teacher-forced pass of the EAGLE paper: row `i` reads the target's `f_i` and `x_{i+1}` and
    predicts `f_{i+1}`. Step `s > 1` is the head drafting on its own predictions, as it does at inference (the
    "training-time test" of EAGLE-3, arXiv 2503.01840): row `i` reads the feature that step `s - 1` predicted for
    the same root and the token `x_{i+s}`, sits at position `i + s - 1`, sees the exact pairs up to `i` and its own
    chain, and predicts `f_{i+s}`. Step `s` has `T - s` rows (`T` = window length): the roots whose next `s` features
    exist. Returns one `[batch, T - s, hidden]` tensor per step; gradients flow through the whole unrolled chain.
    """
    length = tokens.shape[1] - 1
    inputs = features[:, :-1]
    if noise > 0:
        inputs = inputs + (torch.rand_like(inputs) - 0.5) * noise
    cache = DraftingCache() if draft_steps > 1 else None
    positions = torch.arange(length)[None].expand(tokens.shape[0], -1)
    steps = [head(tokens[:, 1:], inputs, positions, _causal_mask(length), cache)]
    rows_per_step = [length]
    for step in range(2, draft_steps + 1):
        rows = length - step + 1
        positions = torch.arange(step - 1, step - 1 + rows)[None].expand(tokens.shape[0], -1)
        steps.append(head(tokens[:, step : step + rows], steps[-1][:, :rows], positions,
                          _drafting_step_mask(rows, rows_per_step), cache))
        rows_per_step.append(rows)
    return steps


def draft_step_scores(head: EagleHead, tokens: torch.Tensor, features: torch.Tensor, draft_steps: int = 1,
                      noise: float = 0.0) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`(feature_loss, token_loss, top1_accuracy)` of each drafting step of `drafted_features`, against the target's
    features `f_{i+s}`. `top1_accuracy` is how often the head's argmax token equals the target's (at step 1: the
    chance a first drafted token is accepted under greedy decoding)."""
    scores = []
    for step, predicted in enumerate(drafted_features(head, tokens, features, draft_steps, noise), start=1):
        wanted = features[:, step : step + predicted.shape[1]]
        feature_loss = F.smooth_l1_loss(predicted.float(), wanted.float())
        with torch.no_grad():
            target_probs = F.softmax(head.lm_head(wanted).float(), dim=-1)
        log_q = F.log_softmax(head.lm_head(predicted).float(), dim=-1)
        token_loss = -(target_probs * log_q).sum(-1).mean()
        accuracy = (log_q.argmax(-1) == target_probs.argmax(-1)).float().mean()
        scores.append((feature_loss, token_loss, accuracy))
    return scores


def eagle3_step_scores(head: Eagle3Head, tokens: torch.Tensor, stored: torch.Tensor, choices: torch.Tensor,
                       target_rows: torch.Tensor, draft_steps: int = 1
                       ) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`(feature_loss, token_loss, top1_accuracy)` of each drafting step of an EAGLE-3 head (`drafted_features` from
    the fused layers), against the target's next-token distribution restricted to the draft vocabulary. EAGLE-3
    regresses no features, so `feature_loss` is 0: the same triples as `draft_step_scores`, for one loss (`step_loss`).

    `stored` is what `generate_features` keeps for EAGLE-3 (`[b, T, 3 * hidden + hidden]`: the fused layers, then the
    last feature), `choices` the target's argmax tokens `[b, T]`, `target_rows` the target's lm_head rows of the
    draft vocabulary. Positions whose target token is outside the draft vocabulary carry no loss (no draft can be
    right there) but count in the accuracy, which is the share of steps whose drafted token is the target's."""
    fused_width = 3 * head.target_hidden_size
    fused, final = stored[..., :fused_width], stored[..., fused_width:]
    with torch.no_grad():
        target_probs = F.softmax(final.float() @ target_rows.T, dim=-1)
        in_vocabulary = head.t2d[choices].float()
        to_target = torch.arange(len(head.d2t)) + head.d2t
    scores = []
    for step, predicted in enumerate(drafted_features(head, tokens, fused, draft_steps), start=1):
        rows = slice(step, step + predicted.shape[1])
        log_q = F.log_softmax(head.logits(predicted).float(), dim=-1)
        mask = in_vocabulary[:, rows]
        token_loss = (-(target_probs[:, rows] * log_q).sum(-1) * mask).sum() / mask.sum().clamp(min=1.0)
        accuracy = (to_target[log_q.argmax(-1)] == choices[:, rows]).float().mean()
        scores.append((torch.zeros(()), token_loss, accuracy))
    return scores


def step_loss(scores, feature_weight: float, token_weight: float):
    """The training loss over the drafting steps' `(feature_loss, token_loss, top1_accuracy)` (`draft_step_scores`,
    `eagle3_step_scores`): the weighted losses' mean over steps. Returns `(loss, feature_loss, token_loss,
    top1_accuracy)`, the last three detached means over steps."""
    loss = sum(feature_weight * feature_loss + token_weight * token_loss for feature_loss, token_loss, _ in scores)
    feature_loss, token_loss, accuracy = (torch.stack([step[index].detach() for step in scores]).mean()
                                          for index in range(3))
    return loss / len(scores), feature_loss, token_loss, accuracy


def eagle_loss(head: EagleHead, tokens: torch.Tensor, features: torch.Tensor, noise: float = 0.0,
               feature_weight: float = 1.0, token_weight: float = 0.1, draft_steps: int = 1):
    """The EAGLE training loss on a batch of windows (`tokens` `[b, T]`, target `features` `[b, T, hidden]`).

    With `draft_steps > 1` the loss is the mean over the unrolled drafting steps of `drafted_features`.
    Returns `(loss, feature_loss, token_loss, top1_accuracy)`, each a mean over steps (`draft_step_scores`).
    """
    return step_loss(draft_step_scores(head, tokens, features, draft_steps, noise), feature_weight, token_weight)


def train_eagle_head(
    model: Union[str, Path],
    texts: Sequence[str],
    output_dir: Union[str, Path],
    arguments: EagleTrainingArguments = EagleTrainingArguments(),
    progress: bool = True,
    chat_prompts: Sequence[str] = (),
    answer_model=None,
) -> dict:
    """Train an EAGLE head (EAGLE-3 with `arguments.eagle3`) for the transformers causal LM `model` on `texts` and
    the target's own answers to `chat_prompts`; write it to `output_dir`.

    `answer_model` answers the chat prompts instead of the torch target: any model with transformers' `generate`, e.g.
    the target exported as an `OVModelForCausalLM`, which generates several times faster on a CPU.

    Returns the training summary (also written to `output_dir/training_summary.json`): steps, final losses and
    the held-out top-1 agreement of the head with the target, per drafting step.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir = Path(output_dir)
    work = output_dir / WORK_FOLDER
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model)
    target = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    config = target.config
    eagle3 = arguments.eagle3
    layers = None
    if eagle3:
        layers = list(arguments.feature_layers or default_feature_layers(config.num_hidden_layers))
        eagle3_config_from_target(config, min(arguments.draft_vocab_size, config.vocab_size), layers)  # checks

    if chat_prompts:
        texts = list(texts) + _cached_chat_answers(work, answer_model if answer_model is not None else target,
                                                   tokenizer, chat_prompts, arguments, progress)
    windows = token_windows(tokenizer, texts, arguments.sequence_length + 1, arguments.max_windows, arguments.seed)
    validation_count = min(arguments.validation_windows, max(1, len(windows) // 10))
    store = FeatureStore(work, windows, config.hidden_size * (4 if eagle3 else 1), arguments.generated_tokens,
                         with_choices=eagle3)
    generate_features(target, store,
                      arguments.generation_batch_size if arguments.generated_tokens else arguments.batch_size,
                      arguments.bf16_autocast, progress, arguments.generated_tokens, layers)
    training_ids = np.arange(validation_count, len(windows))
    validation_ids = np.arange(validation_count)

    torch.manual_seed(arguments.seed)
    vocabulary_summary = {}
    if eagle3:
        draft_size = min(arguments.draft_vocab_size, config.vocab_size)
        draft_ids = most_chosen_tokens(store.choices[training_ids], draft_size, config.vocab_size)
        head = Eagle3Head(eagle3_config_from_target(config, draft_size, layers)).attach_target(target)
        head.set_draft_vocabulary(draft_ids)
        target_rows = target.get_output_embeddings().weight[torch.from_numpy(draft_ids)].detach().float().clone()
        with torch.no_grad():  # start from the target's own readout of its last feature
            head.lm_head.weight.copy_(target_rows)
            head.norm.weight.copy_(target.get_decoder().norm.weight.detach().float())
        validation_choices = np.asarray(store.choices[validation_ids]).ravel()
        vocabulary_summary = {
            "draft_vocab_size": draft_size, "feature_layers": layers,
            # How often the target's own next token is in the draft vocabulary: no draft can be right elsewhere.
            "validation_draft_vocabulary_coverage": round(float(head.t2d[torch.from_numpy(
                validation_choices.astype(np.int64))].float().mean()), 4),
        }
    else:
        head = EagleHead(eagle_config_from_target(config)).attach_target(target)
    del target
    trainable = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=arguments.learning_rate, weight_decay=arguments.weight_decay,
                                  betas=(0.9, 0.95))
    steps_per_epoch = max(1, len(training_ids) // arguments.batch_size)
    steps = max(1, int(round(arguments.epochs * steps_per_epoch)))
    checkpoint_path = work / "checkpoint.pt"
    signature = {"arguments": dataclasses.asdict(arguments), "windows": len(windows)}
    step = 0
    if checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if checkpoint.get("signature") == signature:
            head.load_state_dict(checkpoint["head"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            step = checkpoint["step"]

    def batch_scores(ids, draft_steps: int, noise: float = 0.0):
        """Per drafting step, `(feature_loss, token_loss, top1_accuracy)` of the windows `ids`."""
        tokens = torch.from_numpy(np.asarray(store.tokens[ids]))
        features = torch.from_numpy(np.asarray(store.features[ids], dtype=np.float32))
        if eagle3:
            choices = torch.from_numpy(np.asarray(store.choices[ids]).astype(np.int64))
            return eagle3_step_scores(head, tokens, features, choices, target_rows, draft_steps)
        return draft_step_scores(head, tokens, features, draft_steps, noise)

    # EAGLE-3 learns the target's tokens alone (arXiv 2503.01840); EAGLE-1/2 also regress its features.
    loss_weights = (0.0, 1.0) if eagle3 else (arguments.feature_weight, arguments.token_weight)
    head.train()
    bar = tqdm(total=steps, initial=step, desc="training EAGLE head", unit="step", disable=not progress)
    running = None
    while step < steps:
        epoch, index_in_epoch = divmod(step, steps_per_epoch)
        order = np.random.default_rng(arguments.seed + 1 + epoch).permutation(training_ids)
        batch_ids = np.sort(order[index_in_epoch * arguments.batch_size : (index_in_epoch + 1) * arguments.batch_size])
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, steps, arguments.learning_rate, arguments.warmup_steps,
                                        floor=0.05)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arguments.bf16_autocast):
            loss, feature_loss, token_loss, accuracy = step_loss(
                batch_scores(batch_ids, arguments.draft_steps, arguments.feature_noise), *loss_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 0.5)
        optimizer.step()
        step += 1
        values = np.array([feature_loss.item(), token_loss.item(), accuracy.item()])
        running = values if running is None else 0.95 * running + 0.05 * values
        bar.set_postfix(feature=f"{running[0]:.4f}", token=f"{running[1]:.3f}", top1=f"{running[2]:.3f}")
        bar.update(1)
        if step % arguments.checkpoint_steps == 0 or step == steps:
            _save_checkpoint(checkpoint_path, {"signature": signature, "head": head.state_dict(),
                                               "optimizer": optimizer.state_dict(), "step": step})
    bar.close()
    head.eval()

    with torch.no_grad():
        scores, drafting = [], []
        for start in range(0, len(validation_ids), arguments.batch_size):
            per_step = batch_scores(validation_ids[start : start + arguments.batch_size], VALIDATION_DRAFT_STEPS)
            scores.append([value.item() for value in per_step[0]])
            drafting.append([accuracy.item() for _, _, accuracy in per_step])
        validation = np.mean(scores, axis=0)
    summary = {
        "steps": steps,
        "training_windows": len(training_ids),
        "validation_windows": len(validation_ids),
        "sequence_length": arguments.sequence_length,
        "validation_feature_loss": round(float(validation[0]), 5),
        "validation_token_loss": round(float(validation[1]), 4),
        "validation_top1_agreement": round(float(validation[2]), 4),
        # Drafting on its own features: agreement at steps 1..4 of a chain (step 1 is the figure above).
        "validation_agreement_per_draft_step": [round(float(value), 4) for value in np.mean(drafting, axis=0)],
        "eagle3": eagle3,
        **vocabulary_summary,
        "chat_prompts": len(chat_prompts),
        "seconds": round(time.time() - started, 1),
        "arguments": dataclasses.asdict(arguments),
    }
    with atomic_save_into(output_dir) as staging:  # beside the work folder, which goes once the head is in place
        save_eagle_head(head, staging)
        (staging / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _cached_chat_answers(work: Path, target, tokenizer, prompts: Sequence[str], arguments: EagleTrainingArguments,
                         progress: bool) -> List[str]:
    """The target's answers to `prompts` as chat documents, generated once and kept in the work folder (a resumed run
    reads them back)."""
    path = work / "chat_answers.json"
    key = {"prompts": len(prompts), "checksum": sum(map(_hash_text, prompts)) % 1_000_000_007,
           "answer_tokens": arguments.answer_tokens}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["documents"]
    documents = chat_answers(target, tokenizer, prompts, arguments.answer_tokens,
                             batch_size=max(1, arguments.generation_batch_size // 4), progress=progress)
    _write_json(path, {"key": key, "documents": documents})
    return documents


def _hash_text(text: str) -> int:
    """A hash of `text` that is the same in every process (Python's `hash` of a str is salted per process)."""
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_file(path) as staging, open(staging, "wb") as stream:
        torch.save(state, stream)  # by handle: torch refuses a file name that starts with a dot


def _write_json(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")
