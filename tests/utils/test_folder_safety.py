"""No write ever deletes a folder it did not create: `atomic_directory` replaces an existing folder only when nothing
of the user's goes with it, and says so (ValueError naming the folder) otherwise."""

import pytest

from optimum_dynexec.utils.io import atomic_directory, check_replaceable


def _listing(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_folder_holding_a_users_file_is_never_replaced(tmp_path):
    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("my notes")
    (target / "sub" / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"--output .*out holds files this write would not put back "
                                         r"\(notes.txt, sub/data.csv\)") as caught:
        with atomic_directory(target, argument="--output") as staging:
            (staging / "model.bin").write_text("new model")
    assert (target / "notes.txt").read_text() == "my notes" and (target / "sub" / "data.csv").read_text() == "a,b\n"
    assert _listing(target) == ["notes.txt", "sub", "sub/data.csv"]
    # What the write made is not thrown away: it waits beside the folder, named in the error.
    assert str(tmp_path / "out.new") in str(caught.value)
    assert (tmp_path / "out.new" / "model.bin").read_text() == "new model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "out.new"]  # no staging left behind


def test_a_folder_the_caller_does_not_recognise_is_refused_before_any_work(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.bin").write_text("the user's")  # a name the write would put back: only `ours` can tell
    entered = []
    with pytest.raises(ValueError, match=r"^--data .*out exists and holds files that are not a thing of ours; it "
                                         r"is left as it is: pass another folder\.$"):
        with atomic_directory(target, argument="--data", ours=lambda folder: False, described_as="a thing of ours",
                              remedy="pass another folder"):
            entered.append(True)
    assert entered == [] and (target / "model.bin").read_text() == "the user's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_a_file_is_never_replaced_by_a_folder(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("{}")
    with pytest.raises(ValueError, match="results.json is a file"):
        check_replaceable(target, argument="--output")
    with pytest.raises(ValueError, match="results.json is a file"):
        with atomic_directory(target):
            pass
    assert target.read_text() == "{}"


def test_new_empty_and_own_folders_are_still_written_whole(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty) as staging:
        (staging / "a.txt").write_text("first")
    assert _listing(empty) == ["a.txt"]
    # A rewrite of the same files (our previous output) replaces it, stale contents and all.
    with atomic_directory(empty, ours=lambda folder: (folder / "a.txt").is_file()) as staging:
        (staging / "a.txt").write_text("second")
        (staging / "b.txt").write_text("added")
    assert (empty / "a.txt").read_text() == "second" and _listing(empty) == ["a.txt", "b.txt"]
    # An interrupted write's leftovers are ours: they do not block the next write.
    (empty / ".dynexec-staging-1-x").mkdir()
    (empty / ".calibration.json.partial").write_text("half")
    with atomic_directory(empty) as staging:
        for name in ("a.txt", "b.txt"):
            (staging / name).write_text("third")
    assert _listing(empty) == ["a.txt", "b.txt"] and (empty / "a.txt").read_text() == "third"
