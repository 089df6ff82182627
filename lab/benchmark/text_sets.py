"""Real labelled text sets built from what this machine already holds, for the early-exit benchmark.

Two independent sources, so a result on one can be re-checked on the other:

- `debian-sections`: Debian package short descriptions (the first line of `Description:` in the package lists
  that `apt-get update` fetches), labelled by the package's archive `Section`;
- `python-docstrings`: the first paragraph of every module, class and function docstring of the installed Python
  libraries (site-packages), labelled by the library that holds it ("which library documents this?").

Both go through one writer: texts seen under two labels are dropped, the biggest `top_labels` labels are kept,
each capped at `max_per_label` by a hash order, and the rows are split 80/10/10 by a hash of the text, so a text's
split never depends on which other texts were kept (a bigger cap adds rows to every split, moves none).

A folder is only ever written when it is new, empty, or a text set this module wrote (its `summary.json`): a user's
folder passed by mistake is refused with a ValueError, never replaced.
"""

import ast
import csv
import glob
import hashlib
import json
import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

from tqdm.auto import tqdm

APT_LISTS_DIR = "/var/lib/apt/lists"
TEXT_SETS = ("debian-sections", "python-docstrings")
SPLIT_NAMES = ("train", "validation", "test")
SUMMARY_FILE = "summary.json"
BUILD_COMMAND = "python -m lab.benchmark.classification data --output <folder>"

# Not libraries in the sense of the question "which library documents this?": installers, vendored CUDA
# wheels and build tools whose docstrings are mostly copies of other projects'.
_NOT_LIBRARIES = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "nvidia", "triton", "cuda", "wheel"}
_TEST_FOLDERS = {"test", "tests", "testing"}


def read_debian_package_lists(lists_dir: str = APT_LISTS_DIR) -> Iterable[Tuple[str, str]]:
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


def read_library_docstrings(
    site_packages: str, min_chars: int = 20, max_chars: int = 250
) -> Iterable[Tuple[str, str]]:
    """Yield `(docstring summary, library)` for the modules, classes and functions under `site_packages`.

    The summary is the docstring's first paragraph with its whitespace collapsed; the library is the top-level
    folder. Test folders and files that do not parse are skipped.
    """
    site_packages = Path(site_packages)
    if not site_packages.is_dir():
        raise FileNotFoundError(f"{site_packages} is not a folder; pass the site-packages to read with --site-packages.")
    libraries = sorted(
        entry.name
        for entry in site_packages.iterdir()
        if entry.is_dir()
        and entry.name.isidentifier()
        and entry.name not in _NOT_LIBRARIES
        and (entry / "__init__.py").is_file()
    )
    for library in tqdm(libraries, desc="reading docstrings", unit="library"):
        for folder, subfolders, files in os.walk(site_packages / library):
            subfolders[:] = sorted(name for name in subfolders if name not in _TEST_FOLDERS)
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    tree = ast.parse(Path(folder, name).read_text(encoding="utf-8"))
                except (SyntaxError, UnicodeDecodeError, ValueError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                        docstring = ast.get_docstring(node)
                        if docstring:
                            summary = " ".join(docstring.strip().split("\n\n")[0].split())
                            if min_chars <= len(summary) <= max_chars:
                                yield summary, library


def default_site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def build_text_set(
    name: str,
    output_dir,
    top_labels: int = 10,
    max_per_label: int = 3000,
    lists_dir: str = APT_LISTS_DIR,
    site_packages: str = None,
    argument: str = "output_dir",
) -> dict:
    """Build the text set `name` (one of TEXT_SETS) into `output_dir`; returns its summary.

    `output_dir` must be new, empty or a text set written here before (`argument` names it in the ValueError).
    """
    check_text_set_destination(output_dir, argument)  # before reading the sources, which takes a while
    if name == "debian-sections":
        rows = read_debian_package_lists(lists_dir)
        header = {"name": name, "source": f"Debian package lists ({lists_dir}): Description short line labelled by Section"}
        describe_labels = None
    elif name == "python-docstrings":
        site_packages = site_packages or default_site_packages()
        rows = read_library_docstrings(site_packages)
        header = {"name": name, "source": f"Python docstrings ({site_packages}): first paragraph labelled by its library"}
        describe_labels = _library_versions
    else:
        raise ValueError(f"Unknown text set {name!r}; choose one of {', '.join(TEXT_SETS)}.")
    return write_labelled_splits(rows, output_dir, top_labels, max_per_label, header, describe_labels, argument)


def is_text_set(folder) -> bool:
    """Whether `folder` holds a text set written by `write_labelled_splits`: its `summary.json`, a JSON object with
    the labels kept (`labels`, or `sections` in sets written before sets had names)."""
    try:
        summary = json.loads((Path(folder) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and ("labels" in summary or "sections" in summary)


def check_text_set_destination(output_dir, argument: str = "output_dir") -> None:
    """ValueError naming `argument` unless `output_dir` is new, empty, or a text set written here (safe to rebuild)."""
    from optimum_dynexec.utils.io import check_replaceable

    check_replaceable(
        output_dir,
        argument=argument,
        ours=is_text_set,
        described_as=f"a text set written by optimum-dynexec (it has no {SUMMARY_FILE} of ours)",
        remedy=f"pass an empty or new folder, or a folder built by `{BUILD_COMMAND}`",
    )


def write_labelled_splits(
    rows: Iterable[Tuple[str, str]],
    output_dir,
    top_labels: int = 10,
    max_per_label: int = 3000,
    header: Optional[dict] = None,
    describe_labels: Optional[Callable[[List[str]], dict]] = None,
    argument: str = "output_dir",
) -> dict:
    """Write train.csv / validation.csv / test.csv (columns text,label) and summary.json into `output_dir`.

    The folder appears whole or not at all. `header` opens the summary; `describe_labels(kept_labels)` adds to it.
    An `output_dir` that holds anything but a text set written here raises ValueError naming `argument`; it is
    never replaced.
    """
    from optimum_dynexec.utils.io import atomic_directory

    check_text_set_destination(output_dir, argument)  # before consuming `rows`, which may read for minutes
    labels_of_text = defaultdict(set)
    for text, label in rows:
        labels_of_text[text].add(label)
    unambiguous = {text: labels.pop() for text, labels in labels_of_text.items() if len(labels) == 1}
    if not unambiguous:
        raise ValueError("The source gave no texts; nothing to write.")
    counts = Counter(unambiguous.values())
    kept_labels = sorted(label for label, _ in counts.most_common(top_labels))

    texts_of_label = defaultdict(list)
    for text, label in unambiguous.items():
        if label in kept_labels:
            texts_of_label[label].append(text)
    splits = {name: [] for name in SPLIT_NAMES}
    for label in kept_labels:
        for text in sorted(texts_of_label[label], key=_text_hash)[:max_per_label]:  # a deterministic sample
            bucket = int(_text_hash(text)[:8], 16) % 10
            splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append((text, label))
    summary = {
        **(header or {}),
        "labels": kept_labels,
        "max_per_label": max_per_label,
        "dropped_ambiguous_texts": len(labels_of_text) - len(unambiguous),
        "sizes": {name: len(split) for name, split in splits.items()},
        **(describe_labels(kept_labels) if describe_labels else {}),
    }
    # The check above ran before the rows were read; `atomic_directory` checks again at the moment of replacing.
    with atomic_directory(Path(output_dir), argument=argument, ours=is_text_set,
                          remedy=f"pass an empty or new folder, or a folder built by `{BUILD_COMMAND}`") as staging:
        for name, split in splits.items():
            with open(staging / f"{name}.csv", "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["text", "label"])
                writer.writerows(sorted(split, key=lambda row: _text_hash(row[0])))
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def ensure_text_set(
    data_dir, name: Optional[str] = None, fetch_lists: bool = False, argument: str = "data_dir", **options
) -> dict:
    """The summary of the text set in `data_dir`, built there first if absent (`name`, default Debian sections).

    A folder that already holds another set than the `name` asked for is an error, not a silent substitute; so is a
    folder that holds other files (ValueError naming `argument`, e.g. "--data"): it is never replaced. For Debian,
    `fetch_lists` runs `apt-get update` when the machine has no package lists.
    """
    data_dir = Path(data_dir)
    if (data_dir / SUMMARY_FILE).is_file():
        summary = json.loads((data_dir / SUMMARY_FILE).read_text())
        held = summary.get("name", "debian-sections")  # folders written before sets had names are Debian's
        if name is not None and name != held:
            raise ValueError(
                f"{data_dir} already holds the {held!r} text set, not {name!r}: pass another folder to build "
                f"{name!r} there, or leave out --text-set to use what it holds."
            )
        return summary
    check_text_set_destination(data_dir, argument)  # before apt-get update
    name = name or "debian-sections"
    if name == "debian-sections" and fetch_lists and not glob.glob(os.path.join(APT_LISTS_DIR, "*_binary-*_Packages*")):
        subprocess.run(["apt-get", "update"], check=True)
    return build_text_set(name, data_dir, argument=argument, **options)


def _library_versions(libraries) -> dict:
    """`{"library_versions": {library: installed version or None}}`, for the summary of the docstrings set."""
    from importlib import metadata

    distributions_of = metadata.packages_distributions()  # scans every installed distribution: once
    versions = {}
    for library in libraries:
        distributions = distributions_of.get(library, [])
        versions[library] = metadata.version(distributions[0]) if distributions else None
    return {"library_versions": versions}


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
