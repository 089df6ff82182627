"""Early-exit classification benchmark on a real labelled text set found on the machine.

The data: Debian package short descriptions (the first line of `Description:` in the package lists that
`apt-get update` fetches), labelled by the package's archive `Section`, top sections only, deduplicated
(texts seen under two sections are dropped), split 80/10/10 by a hash of the text.

    python -m optimum_dynexec.benchmark.classification data  --output runs/debian
    python -m optimum_dynexec.benchmark.classification run   --data runs/debian --model runs/exits ...
"""

import argparse
import csv
import glob
import hashlib
import json
import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

APT_LISTS_DIR = "/var/lib/apt/lists"


def read_debian_package_lists(lists_dir: str = APT_LISTS_DIR):
    """Yield `(short description, section)` of every binary package in the apt lists (plain, .lz4, .gz, .xz)."""
    paths = sorted(glob.glob(os.path.join(lists_dir, "*_binary-*_Packages*")))
    if not paths:
        raise FileNotFoundError(
            f"No Debian package lists in {lists_dir}. Run `apt-get update` (as root) first, or pass "
            "--fetch-lists to let this script run it."
        )
    for path in paths:
        for stanza in _read_text(path).split("\n\n"):
            description = section = None
            for line in stanza.split("\n"):
                if line.startswith("Description:"):
                    description = line[len("Description:") :].strip()
                elif line.startswith("Section:"):
                    section = line[len("Section:") :].strip().split("/")[-1]  # "contrib/net" -> "net"
            if description and section:
                yield description, section


def build_debian_sections_dataset(
    output_dir, top_sections: int = 10, max_per_section: int = 3000, lists_dir: str = APT_LISTS_DIR
) -> dict:
    """Write train.csv / validation.csv / test.csv (columns text,label) and summary.json into `output_dir`."""
    from ..fixtures.cache import atomic_directory

    sections_of_text = defaultdict(set)
    for description, section in read_debian_package_lists(lists_dir):
        sections_of_text[description].add(section)
    unambiguous = {text: sections.pop() for text, sections in sections_of_text.items() if len(sections) == 1}
    counts = Counter(unambiguous.values())
    kept_sections = sorted(section for section, _ in counts.most_common(top_sections))

    by_section = defaultdict(list)
    for text, section in unambiguous.items():
        if section in kept_sections:
            by_section[section].append(text)
    rows = []
    for section in kept_sections:
        texts = sorted(by_section[section], key=_text_hash)[:max_per_section]  # a deterministic sample
        rows += [(text, section) for text in texts]

    splits = {"train": [], "validation": [], "test": []}
    for text, section in rows:
        bucket = int(_text_hash(text)[:8], 16) % 10
        splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append((text, section))
    summary = {
        "source": "Debian package lists (" + lists_dir + "): Description short line labelled by Section",
        "sections": kept_sections,
        "max_per_section": max_per_section,
        "sizes": {name: len(split) for name, split in splits.items()},
    }
    with atomic_directory(Path(output_dir)) as staging:
        for name, split in splits.items():
            with open(staging / f"{name}.csv", "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["text", "label"])
                writer.writerows(sorted(split, key=lambda row: _text_hash(row[0])))
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _read_text(path: str) -> str:
    if path.endswith(".lz4"):
        return subprocess.run(["lz4", "-dc", path], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
    if path.endswith(".xz"):
        import lzma

        return lzma.open(path, "rt", encoding="utf-8", errors="replace").read()
    return open(path, encoding="utf-8", errors="replace").read()
