"""Tiny early-exit models shared by tests/early_exit/ and tests/benchmark/ (built once per process, offline).

A word-level BERT tokenizer over a 40-word vocabulary, tiny BERT/RoBERTa/ALBERT/DistilBERT classifiers built
from configs, and a synthetic 3-class task: the class is given by a keyword among filler words, and a second
keyword in some texts makes them harder, so trained exits are confident on some rows and not on others.
"""

import atexit
import functools
import random
import shutil
import tempfile
from pathlib import Path

import torch
import transformers

KEYWORDS = {"alpha": ["red", "rose", "ruby"], "beta": ["green", "grass", "mint"], "gamma": ["blue", "sky", "sea"]}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "for", "on", "with", "as", "at", "by", "this", "that"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FAMILIES = ("bert", "roberta", "albert", "distilbert", "electra")

_ROOT = Path(tempfile.mkdtemp(prefix="early-exit-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)  # every test run made one and left it behind


def vocabulary():
    return SPECIAL + FILLER + [word for words in KEYWORDS.values() for word in words]


def synthetic_task(count: int, seed: int):
    """`count` (text, label) pairs; roughly a third mention a second class's keyword too (the hard rows)."""
    rng = random.Random(seed)
    texts, labels = [], []
    labels_cycle = sorted(KEYWORDS)
    for index in range(count):
        label = labels_cycle[index % 3]
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[label]))
        if rng.random() < 0.33:
            other = rng.choice([name for name in labels_cycle if name != label])
            words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[other]))
            words.append(rng.choice(KEYWORDS[label]))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@functools.lru_cache(maxsize=None)
def tokenizer_dir() -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {word: index for index, word in enumerate(vocabulary())}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    folder = _ROOT / "tokenizer"
    tokenizer.save_pretrained(folder)
    return folder


def _config(family: str, num_layers: int):
    common = dict(vocab_size=len(vocabulary()), num_labels=3, pad_token_id=0)
    if family == "bert":
        return transformers.BertConfig(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                                       intermediate_size=64, **common)
    if family in ("camembert", "xlm-roberta"):  # RoBERTa's layout under other names
        config_class = transformers.CamembertConfig if family == "camembert" else transformers.XLMRobertaConfig
        return config_class(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=80, bos_token_id=2, eos_token_id=3, **common)
    if family == "roberta":
        return transformers.RobertaConfig(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=80, bos_token_id=2,
                                          eos_token_id=3, **common)
    if family == "albert":
        return transformers.AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=num_layers,
                                         num_attention_heads=2, intermediate_size=64, **common)
    if family == "distilbert":
        return transformers.DistilBertConfig(dim=32, n_layers=num_layers, n_heads=2, hidden_dim=64, **common)
    if family == "electra":  # embedding size under the hidden size: the embeddings are projected up
        return transformers.ElectraConfig(embedding_size=16, hidden_size=32, num_hidden_layers=num_layers,
                                          num_attention_heads=2, intermediate_size=64, **common)
    raise ValueError(family)


@functools.lru_cache(maxsize=None)
def base_classifier(family: str, num_layers: int = 3) -> Path:
    """An untrained tiny `*ForSequenceClassification` with the tokenizer, saved like a hub checkpoint."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(_config(family, num_layers))
    folder = _ROOT / f"base-{family}-{num_layers}"
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir()).save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=None)
def trained_checkpoint(family: str = "bert", scheme: str = "joint", epochs: float = 4.0) -> Path:
    from optimum_dynexec.early_exit.training import ExitTrainingArguments, train_exits

    train = synthetic_task(240, seed=1)
    validation = synthetic_task(60, seed=2)
    folder = _ROOT / f"exits-{family}-{scheme}-{epochs}"
    arguments = ExitTrainingArguments(
        scheme=scheme, epochs=epochs, batch_size=16, learning_rate=2e-3, head_learning_rate=5e-3, warmup_ratio=0.0
    )
    train_exits(str(base_classifier(family)), *train, *validation, folder, arguments)
    return folder


@functools.lru_cache(maxsize=None)
def exported_folder(family: str = "bert") -> Path:
    from optimum_dynexec.early_exit import export_early_exit

    return export_early_exit(trained_checkpoint(family), _ROOT / f"ov-{family}")
