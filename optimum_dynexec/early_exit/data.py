"""Labelled texts for training and calibrating exits: CSV/TSV/JSON(L) files, a folder of splits, or a `datasets` set."""

import hashlib
from pathlib import Path
from typing import List, Optional, Tuple

SPLIT_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev", "val")


def load_labelled_texts(
    dataset: str,
    split: str = "train",
    text_column: str = "text",
    label_column: str = "label",
) -> Tuple[List[str], List[str]]:
    """Return `(texts, labels)` of one split, labels as strings (class names).

    `dataset` is a `.csv`/`.tsv`/`.json`/`.jsonl` file (the whole file is the split), a folder holding
    `<split>.csv` (or another of those suffixes), a folder written by `datasets.Dataset.save_to_disk`, or the
    name of a `datasets` dataset already in the local cache. Raises ValueError naming what is missing.
    """
    path = Path(dataset)
    if path.is_file():
        records = _read_file(path)
    elif path.is_dir() and _split_file(path, split) is not None:
        records = _read_file(_split_file(path, split))
    else:
        records = _read_datasets(dataset, split)
    if not records:
        raise ValueError(f"The {split!r} split of {dataset!r} is empty.")
    missing = [column for column in (text_column, label_column) if column not in records[0]]
    if missing:
        raise ValueError(
            f"{dataset!r} ({split}) has no column(s) {missing}; its columns are {sorted(records[0])}. "
            "Name the right ones with --text-column / --label-column."
        )
    texts = [str(record[text_column]) for record in records]
    labels = [str(record[label_column]) for record in records]
    return texts, labels


def has_split(dataset: str, split: str) -> bool:
    path = Path(dataset)
    if path.is_file():
        return False
    if path.is_dir():
        return _split_file(path, split) is not None or (path / split).is_dir()
    try:
        _read_datasets(dataset, split)
        return True
    except ValueError:
        return False


def find_validation_split(dataset: str) -> Optional[str]:
    return next((name for name in VALIDATION_SPLIT_NAMES if has_split(dataset, name)), None)


def hold_out(texts: List[str], labels: List[str], fraction: float = 0.1):
    """Split deterministically by a hash of the text, so the same text always lands on the same side."""
    kept, held = ([], []), ([], [])
    for text, label in zip(texts, labels):
        bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
        side = held if bucket < fraction else kept
        side[0].append(text)
        side[1].append(label)
    return kept, held


def _split_file(folder: Path, split: str) -> Optional[Path]:
    for suffix in SPLIT_FILE_SUFFIXES:
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    return None


def _read_file(path: Path) -> List[dict]:
    import csv
    import json

    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream, delimiter="\t" if path.suffix == ".tsv" else ","))
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as stream:
            return [json.loads(line) for line in stream if line.strip()]
    if path.suffix == ".json":
        with open(path, encoding="utf-8") as stream:
            content = json.load(stream)
        if isinstance(content, dict):  # {"text": [...], "label": [...]} column layout
            columns = list(content)
            return [dict(zip(columns, row)) for row in zip(*content.values())]
        return content
    raise ValueError(f"Unsupported dataset file {path}: use one of {SPLIT_FILE_SUFFIXES}.")


def _read_datasets(name: str, split: str) -> List[dict]:
    try:
        import datasets
    except ImportError as error:
        raise ValueError(
            f"{name!r} is neither a file nor a folder of split files, and `datasets` is not installed to load it."
        ) from error
    path = Path(name)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / split).is_dir()):
            loaded = datasets.load_from_disk(str(path))
            loaded = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            loaded = datasets.load_dataset(name, split=split)
    except (KeyError, FileNotFoundError, ValueError, ConnectionError) as error:
        raise ValueError(f"Could not load split {split!r} of dataset {name!r}: {error}") from error
    label_feature = loaded.features.get("label")
    records = list(loaded)
    if label_feature is not None and hasattr(label_feature, "int2str"):
        for record in records:
            record["label"] = label_feature.int2str(record["label"])
    return records
