"""The benchmark's labelled text sets: what is read, what is dropped, and how rows are split."""

import csv
import json

import pytest

from lab.benchmark.text_sets import (
    build_text_set,
    ensure_text_set,
    read_debian_package_lists,
    read_library_docstrings,
    write_labelled_splits,
)


def _read_split(folder, name):
    with open(folder / f"{name}.csv", newline="", encoding="utf-8") as stream:
        return [(row["text"], row["label"]) for row in csv.DictReader(stream)]


def _write_library(root, name, files):
    for relative, source in files.items():
        path = root / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


@pytest.fixture
def site_packages(tmp_path):
    root = tmp_path / "site-packages"
    _write_library(
        root,
        "alpha",
        {
            "__init__.py": '"""Alpha: tools for reading star charts aloud."""\n',
            "core.py": (
                "def f():\n"
                '    """Return the brightest star in the chart.\n\n    Longer text that is not the summary."""\n'
                "class C:\n"
                '    """Shared summary that both libraries use verbatim."""\n'
                "    def m(self):\n"
                '        """Short."""\n'  # under min_chars: skipped
            ),
            "tests/test_core.py": 'def test_x():\n    """A test docstring that must be skipped entirely."""\n',
            "broken.py": "def (:\n",  # does not parse: skipped, not fatal
        },
    )
    _write_library(
        root,
        "beta",
        {
            "__init__.py": "",
            "io.py": (
                'def g():\n    """Write the   ledger\n    to disk in one atomic step."""\n'
                'def h():\n    """Shared summary that both libraries use verbatim."""\n'
            ),
        },
    )
    (root / "gamma-1.0.dist-info").mkdir()
    (root / "no_init_folder").mkdir()
    (root / "no_init_folder" / "x.py").write_text('"""Not a package, so not a library here."""\n')
    return root


def test_docstrings_are_first_paragraphs_labelled_by_library(site_packages):
    rows = sorted(read_library_docstrings(str(site_packages)))
    assert rows == sorted(
        [
            ("Alpha: tools for reading star charts aloud.", "alpha"),
            ("Return the brightest star in the chart.", "alpha"),
            ("Shared summary that both libraries use verbatim.", "alpha"),
            ("Write the ledger to disk in one atomic step.", "beta"),
            ("Shared summary that both libraries use verbatim.", "beta"),
        ]
    )


def test_ambiguous_texts_are_dropped_and_summary_records_the_set(site_packages, tmp_path):
    summary = build_text_set("python-docstrings", tmp_path / "set", site_packages=str(site_packages))
    rows = [row for name in ("train", "validation", "test") for row in _read_split(tmp_path / "set", name)]
    assert "Shared summary that both libraries use verbatim." not in {text for text, _ in rows}
    assert summary["dropped_ambiguous_texts"] == 1
    assert summary["labels"] == ["alpha", "beta"]
    assert sum(summary["sizes"].values()) == len(rows) == 3
    assert json.loads((tmp_path / "set" / "summary.json").read_text()) == summary
    assert set(summary["library_versions"]) == {"alpha", "beta"}


def _synthetic_rows(count):
    return [(f"text number {index} about {label}", label) for index in range(count) for label in ("a", "b", "c")]


def test_splits_are_disjoint_deterministic_and_stable_under_a_bigger_cap(tmp_path):
    small = write_labelled_splits(_synthetic_rows(400), tmp_path / "small", top_labels=2, max_per_label=200)
    again = write_labelled_splits(_synthetic_rows(400), tmp_path / "again", top_labels=2, max_per_label=200)
    bigger = write_labelled_splits(_synthetic_rows(400), tmp_path / "bigger", top_labels=2, max_per_label=400)
    assert small["labels"] == ["a", "b"] and again == small  # only the top two labels kept
    splits = {name: _read_split(tmp_path / "small", name) for name in ("train", "validation", "test")}
    texts = [set(text for text, _ in rows) for rows in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert sum(len(rows) for rows in splits.values()) == 400
    assert 0.05 < len(splits["test"]) / 400 < 0.15 and 0.05 < len(splits["validation"]) / 400 < 0.15
    for name in splits:
        assert _read_split(tmp_path / "again", name) == splits[name]
        # A bigger cap adds rows but moves none: no text trained on can reach validation or test.
        assert set(splits[name]) <= set(_read_split(tmp_path / "bigger", name))
    assert small["sizes"] != bigger["sizes"]


def test_a_failing_source_leaves_no_folder(tmp_path):
    def rows_then_failure():
        yield "a text", "a"
        raise OSError("disk went away")

    with pytest.raises(OSError):
        write_labelled_splits(rows_then_failure(), tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_debian_lists_are_read_and_missing_lists_say_what_to_do(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_stable_main_binary-amd64_Packages").write_text(
        "Package: a\nSection: net\nDescription: fast network tool\n more\n\n"
        "Package: b\nSection: contrib/utils\nDescription: small helper\n\n"
        "Package: c\nDescription: no section, skipped\n"
    )
    assert list(read_debian_package_lists(str(lists))) == [("fast network tool", "net"), ("small helper", "utils")]
    with pytest.raises(FileNotFoundError, match="apt-get update"):
        list(read_debian_package_lists(str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="python-docstrings"):
        build_text_set("tweets", tmp_path / "x")


def test_an_existing_folder_is_reused_but_never_taken_for_another_set(site_packages, tmp_path):
    built = ensure_text_set(tmp_path / "set", "python-docstrings", site_packages=str(site_packages))
    (tmp_path / "set" / "train.csv").write_text("text,label\nmarker,alpha\n")  # a rebuild would overwrite this
    assert ensure_text_set(tmp_path / "set") == built
    assert ensure_text_set(tmp_path / "set", "python-docstrings") == built
    assert _read_split(tmp_path / "set", "train") == [("marker", "alpha")]
    with pytest.raises(ValueError, match="already holds the 'python-docstrings' text set"):
        ensure_text_set(tmp_path / "set", "debian-sections")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"sections": ["net"]}))  # written before sets had names
    with pytest.raises(ValueError, match="'debian-sections' text set, not 'python-docstrings'"):
        ensure_text_set(tmp_path / "old", "python-docstrings")


def test_a_users_folder_is_refused_and_left_intact(tmp_path):
    # The data loss of issue 20: `--data` pointing at a folder of the user's, without our summary.json, was deleted
    # and replaced by the Debian set without a word.
    user = tmp_path / "my-data"
    user.mkdir()
    (user / "train.csv").write_text("text,label\nmine,x\n")  # names a text set also writes: still not ours
    (user / "notes.txt").write_text("keep me")
    read = []

    def rows():
        read.append(True)
        yield "a text", "a"

    for call in (
        lambda: ensure_text_set(user, "python-docstrings", argument="--data"),
        lambda: ensure_text_set(user, argument="--data"),
        lambda: write_labelled_splits(rows(), user, argument="--data"),
        lambda: build_text_set("debian-sections", user, argument="--data"),
    ):
        with pytest.raises(ValueError, match=rf"^--data {user} exists and holds files that are not a text set written "
                                             r"by optimum-dynexec .*pass an empty or new folder, or a folder built by "
                                             r"`python -m lab.benchmark.classification data"):
            call()
    assert read == []  # refused before reading any source
    assert sorted(path.name for path in user.iterdir()) == ["notes.txt", "train.csv"]
    assert (user / "notes.txt").read_text() == "keep me"
    assert (user / "train.csv").read_text() == "text,label\nmine,x\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["my-data"]


def test_a_text_set_is_rebuilt_in_place_but_a_file_added_to_it_is_kept(tmp_path):
    empty = tmp_path / "set"
    empty.mkdir()
    first = write_labelled_splits(_synthetic_rows(50), empty, top_labels=2)  # an empty folder is written
    second = write_labelled_splits(_synthetic_rows(80), empty, top_labels=3)  # our own set is rebuilt
    assert first["labels"] == ["a", "b"] and second["labels"] == ["a", "b", "c"]
    assert json.loads((empty / "summary.json").read_text()) == second
    (empty / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files this write would not put back \(notes.txt\)"):
        write_labelled_splits(_synthetic_rows(20), empty, top_labels=1)
    assert (empty / "notes.txt").read_text() == "mine"
    assert json.loads((empty / "summary.json").read_text()) == second


def test_the_data_command_names_its_option(tmp_path, capsys):
    from lab.benchmark.classification import main

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    for argv in (["data", "--output", str(tmp_path / "photos")],
                 ["run", "--data", str(tmp_path / "photos"), "--checkpoint", "x", "--output", str(tmp_path / "b")]):
        with pytest.raises(SystemExit):
            main(argv)
        option = argv[1]
        assert f"error: {option} {tmp_path / 'photos'} exists and holds files that are not a text set" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "photos").iterdir()] == ["cat.jpg"]
    assert not (tmp_path / "b").exists()
