"""Labelled texts for training and calibrating exits: CSV/TSV/JSON(L) files, a folder of splits, or a `datasets` set."""

import hashlib
import reprlib
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
    name of a `datasets` dataset already in the local cache. Every row must have both columns, with a non-empty
    label: a malformed file raises ValueError naming the file, the expected columns and the row (its line in a
    CSV/TSV/JSONL file), rather than letting a missing value pass on as the label "None".
    """
    where, rows = _read_split(dataset, split)
    return _checked_columns(where, rows, (text_column, label_column))


def load_texts(
    dataset: str,
    split: str = "validation",
    text_column: str = "text",
    label_column: str = "label",
) -> Tuple[List[str], Optional[List[str]]]:
    """Return `(texts, labels)` of one split, or `(texts, None)` when the split has no `label_column`.

    For what needs no labels (calibrating consistency with the full model): a file with a text column only is
    enough, and so is a `datasets` split whose labels are all missing (-1, as in GLUE's test splits). The sources
    and checks are `load_labelled_texts`'s; a labelled split is read exactly as there, an unlabelled one must have a
    text in every row.
    """
    where, rows = _read_split(dataset, split)
    records = [record for _, record in rows]
    unlabelled = all(isinstance(record, dict) and record.get(label_column) is None for record in records)
    if not unlabelled:
        return _checked_columns(where, rows, (text_column, label_column))
    texts, _ = _checked_columns(where, rows, (text_column,))
    return texts, None


def _read_split(dataset: str, split: str):
    """`(where, rows)` of one split: a description for errors and its `(row name, record)` pairs, never empty."""
    path = Path(dataset)
    source = path if path.is_file() else _split_file(path, split) if path.is_dir() else None
    if source is not None:
        where, rows = str(source), _read_file(source)
    else:
        where = f"dataset {dataset!r} ({split} split)"
        rows = [(f"row {index}", record) for index, record in enumerate(_read_datasets(dataset, split))]
    if not rows:
        raise ValueError(f"The {split!r} split of {dataset!r} is empty ({where}).")
    return where, rows


def _checked_columns(where: str, rows, columns) -> Tuple[List[str], Optional[List[str]]]:
    """The texts (and labels, when `columns` names a label column) of `rows`, or a ValueError naming the bad row."""
    first = rows[0][1]
    if isinstance(first, dict) and not set(columns) <= set(first):
        missing = [column for column in columns if column not in first]
        flags = "--text-column / --label-column" if len(columns) > 1 else "--text-column"
        raise ValueError(
            f"{where} has no column(s) {missing}; its columns are {sorted(map(str, first))}. Expected columns "
            f"{list(columns)}: name the right ones with {flags}."
        )
    texts, labels = [], []
    for row, record in rows:
        problem = _row_problem(record, columns)
        if problem:
            content = "a text and a non-empty label" if len(columns) > 1 else "a text"
            raise ValueError(
                f"{where}, {row}: {problem}. Expected columns {list(columns)} with {content} in "
                "every row (in CSV/TSV, quote texts that contain the delimiter, a quote or a line break)."
            )
        texts.append(str(record[columns[0]]))
        if len(columns) > 1:
            labels.append(str(record[columns[1]]))
    return texts, (labels if len(columns) > 1 else None)


def _row_problem(record, columns) -> Optional[str]:
    """What is wrong with one record (None if nothing): the checks that keep a broken row from becoming label "None"."""
    if not isinstance(record, dict):
        return f"expected a record with named columns, got {type(record).__name__} {reprlib.repr(record)}"
    if None in record:  # csv.DictReader's key for the fields beyond the header's
        return f"{len(record) - 1 + len(record[None])} fields, more than the header's {len(record) - 1}"
    missing = [column for column in columns if record.get(column) is None]
    if missing:
        return f"no value for {missing} (missing, null, or fewer fields than the header)"
    if len(columns) > 1 and str(record[columns[1]]).strip() == "":
        return f"empty {columns[1]!r}"
    return None


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


def _read_file(path: Path) -> List[Tuple[str, object]]:
    """`(where, record)` pairs of a data file, `where` being the record's line ("line 7") or position ("record 3")."""
    import csv
    import json

    if path.suffix not in SPLIT_FILE_SUFFIXES:
        raise ValueError(f"Unsupported dataset file {path}: use one of {SPLIT_FILE_SUFFIXES}.")
    line = 0
    try:
        with open(path, newline="" if path.suffix in (".csv", ".tsv") else None, encoding="utf-8") as stream:
            if path.suffix in (".csv", ".tsv"):
                reader = csv.DictReader(stream, delimiter="\t" if path.suffix == ".tsv" else ",")
                rows = []
                line = reader.line_num if reader.fieldnames is not None else 0  # reading the header
                for record in reader:
                    # A quoted field may span lines: name all of them (line_num is where the record ends).
                    first, line = line + 1, reader.line_num
                    rows.append((f"line {line}" if first == line else f"lines {first}-{line}", record))
                return rows
            if path.suffix == ".jsonl":
                rows = []
                for line, text in enumerate(stream, start=1):
                    if text.strip():
                        rows.append((f"line {line}", json.loads(text)))
                return rows
            content = json.load(stream)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}): save it as UTF-8.") from None
    except (csv.Error, json.JSONDecodeError) as error:
        # CSV: `line` is the last record read, the broken one follows it; JSONL: the line being parsed.
        where = {".json": f"line {getattr(error, 'lineno', '?')}", ".jsonl": f"line {line}"}.get(path.suffix, f"line {line + 1}")
        raise ValueError(f"{path}, {where}: not valid {path.suffix[1:].upper()} ({error}).") from None
    if isinstance(content, dict):  # {"text": [...], "label": [...]} column layout
        columns = list(content)
        if not all(isinstance(values, list) for values in content.values()):
            raise ValueError(f"{path} must hold a list of records or a dict of equally long column lists.")
        lengths = {column: len(values) for column, values in content.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{path}: its columns have different lengths {lengths}; each row needs every column.")
        return [(f"record {index}", dict(zip(columns, row))) for index, row in enumerate(zip(*content.values()))]
    if not isinstance(content, list):
        raise ValueError(f"{path} must hold a list of records or a dict of column lists, got {type(content).__name__}.")
    return [(f"record {index}", record) for index, record in enumerate(content)]


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
            # -1 is `datasets`' "no label" (GLUE's test splits): None, which `load_texts` reads as unlabelled.
            record["label"] = None if record["label"] == -1 else label_feature.int2str(record["label"])
    return records
