"""OVEarlyExitModelForSequenceClassification under bad input and concurrent calls (issue 16).

Every bad argument, damaged file or malformed data row must raise a TypeError/ValueError that names the argument (or
the file) and the fix, never an error from deep inside OpenVINO or a silently wrong answer; calls from several threads
on one model object must give exactly the sequential results.
"""

import copy
import fractions
import json
import shutil
import threading

import numpy as np
import pytest
import torch
from helpers.tiny_classifiers import synthetic_task

from optimum_dynexec.early_exit import EarlyExitConfig, OVEarlyExitModelForSequenceClassification
from optimum_dynexec.early_exit.calibration import normalised_entropies, sweep_thresholds
from optimum_dynexec.early_exit.data import load_labelled_texts

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
TEXTS = synthetic_task(12, seed=11)[0]
REEXPORT = "optimum-cli export dynexec --task text-classification"


@pytest.fixture
def encoded(tokenizer):
    return dict(tokenizer(TEXTS[:2], padding=True, return_tensors="np"))


def _damaged_copy(folder, tmp_path, edit):
    copied = tmp_path / "model"
    shutil.copytree(folder, copied)
    edit(copied)
    return copied


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----- threads ----------------------------------------------------------------------------------------------------


def test_concurrent_calls_on_one_model_give_exactly_the_sequential_results(model, tokenizer):
    calls = [
        dict(tokenizer(TEXTS[index : index + 4] if index % 3 == 0 else [TEXTS[index]], padding=True, return_tensors="np"))
        for index in range(9)
    ]
    # Thresholds between the rows' layer-1 and layer-2 entropies, so rows leave at different layers.
    entropies = normalised_entropies(
        model.exit_logits_per_layer(**dict(tokenizer(TEXTS, padding=True, return_tensors="np"))),
        model.early_exit_config.exit_temperatures,
    )
    thresholds = [float(np.quantile(entropies[:-1], q)) for q in (0.3, 0.7)]
    work = [(call, threshold) for call in calls for threshold in thresholds]
    expected = [model(**call, entropy_threshold=threshold, output_exit_layers=True) for call, threshold in work]
    assert len({int(layer) for output in expected for layer in output.exit_layers}) > 1

    threads_count, passes = 4, 3
    start = threading.Barrier(threads_count)
    outcomes = []

    def run(seed):
        order = np.random.default_rng(seed).permutation(len(work))
        start.wait()
        for _ in range(passes):
            for index in order:
                call, threshold = work[index]
                try:
                    outcomes.append((index, model(**call, entropy_threshold=threshold, output_exit_layers=True)))
                except Exception as error:  # collected, so the assertion below reports it
                    outcomes.append((index, error))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outcomes) == threads_count * passes * len(work)
    errors = [outcome for _, outcome in outcomes if isinstance(outcome, Exception)]
    assert errors == []
    different = [
        index for index, output in outcomes
        if not (np.array_equal(output.logits, expected[index].logits)
                and np.array_equal(output.exit_layers, expected[index].exit_layers))
    ]
    assert different == []


def test_a_deep_copy_is_independent_and_gives_the_same_results(model, encoded):
    copied = copy.deepcopy(model)
    for threshold in (0.0, 0.5):
        original, duplicate = (m(**encoded, entropy_threshold=threshold, output_exit_layers=True) for m in (model, copied))
        np.testing.assert_array_equal(duplicate.logits, original.logits)
        np.testing.assert_array_equal(duplicate.exit_layers, original.exit_layers)
    # Independent: its settings are its own, and releasing its graphs leaves the original answering as before.
    copied.entropy_threshold = 0.9
    assert model.entropy_threshold != 0.9
    copied.clear_requests()
    again = model(**encoded, entropy_threshold=0.5, output_exit_layers=True)
    np.testing.assert_array_equal(again.logits, original.logits)


# ----- forward arguments -----------------------------------------------------------------------------------------


def _shape(encoded, name, shape):
    return {**encoded, name: np.zeros(shape, dtype=np.int64)}


@pytest.mark.parametrize(
    "make_inputs, error, message",
    [
        (lambda e: _shape(e, "token_type_ids", (2, 3)), ValueError, "token_type_ids"),
        (lambda e: _shape(e, "token_type_ids", (e["input_ids"].shape[1],)), ValueError, "token_type_ids"),
        (lambda e: {**e, "token_type_ids": np.zeros(e["input_ids"].shape, np.float32)}, TypeError, "token_type_ids"),
        (lambda e: {**e, "token_type_ids": np.full(e["input_ids"].shape, 7)}, ValueError, "token_type_ids"),
        (lambda e: {**e, "attention_mask": e["attention_mask"][:, :-1]}, ValueError, "attention_mask"),
        (lambda e: {**e, "attention_mask": e["attention_mask"] * 2}, ValueError, "attention_mask"),
        (lambda e: {**e, "attention_mask": np.vstack([np.zeros_like(e["attention_mask"][:1]), e["attention_mask"][1:]])},
         ValueError, "attention_mask` row 0"),
        (lambda e: {"input_ids": e["input_ids"][0]}, ValueError, "input_ids"),
        (lambda e: {"input_ids": e["input_ids"][:0]}, ValueError, "input_ids"),
        (lambda e: {"input_ids": e["input_ids"][:, :0]}, ValueError, "input_ids"),
        (lambda e: {"input_ids": e["input_ids"] + 1000}, ValueError, "input_ids.*vocabulary"),
        (lambda e: {"input_ids": -e["input_ids"] - 1}, ValueError, "input_ids.*vocabulary"),
        (lambda e: {"input_ids": np.full((2, 600), 5)}, ValueError, "input_ids.*truncation=True"),
        (lambda e: {"input_ids": e["input_ids"].astype(np.float32)}, TypeError, "input_ids"),
        (lambda e: {"input_ids": [[2, 5, 3], [2, 3]]}, TypeError, "input_ids"),
        (lambda e: {"attention_mask": e["attention_mask"]}, ValueError, "input_ids` is required"),
        (lambda e: {**e, "inputs_embeds": np.zeros((2, 3, 32), np.float32)}, TypeError, "inputs_embeds"),
        (lambda e: {**e, "position_ids": np.zeros_like(e["input_ids"])}, TypeError, "position_ids"),
        (lambda e: {**e, "output_exit_layers": "yes"}, TypeError, "output_exit_layers"),
    ],
)
def test_bad_forward_arguments_raise_errors_naming_the_argument(model, encoded, make_inputs, error, message):
    with pytest.raises(error, match=message):
        model(**make_inputs(encoded))


@pytest.mark.parametrize(
    "make_inputs",
    [
        lambda e: {**e, "input_ids": e["input_ids"][0]},
        lambda e: {**e, "token_type_ids": np.zeros((2, 3), np.int64)},
        lambda e: {**e, "input_ids": e["input_ids"] + 1000},
    ],
)
def test_exit_logits_per_layer_checks_its_inputs_too(model, encoded, make_inputs):
    with pytest.raises(ValueError, match="input_ids|token_type_ids"):
        model.exit_logits_per_layer(**make_inputs(encoded))


def test_inputs_that_are_fine_give_the_plain_result(model, encoded):
    expected = model(**encoded, entropy_threshold=0.3).logits
    variants = [
        {**encoded, "attention_mask": encoded["attention_mask"].astype(bool)},
        {**encoded, "input_ids": encoded["input_ids"].astype(np.int32)},
        {**encoded, "input_ids": np.asfortranarray(encoded["input_ids"])},
        {**encoded, "token_type_ids": np.zeros_like(encoded["input_ids"])},
        {**encoded, "return_dict": True, "output_hidden_states": False, "labels": None},
    ]
    for inputs in variants:
        np.testing.assert_array_equal(model(**inputs, entropy_threshold=0.3).logits, expected)


# ----- entropy_threshold -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "threshold",
    [np.float32(0.25), np.float64(0.25), np.array(0.25), torch.tensor(0.25, dtype=torch.float64), fractions.Fraction(1, 4)],
)
def test_entropy_threshold_takes_any_real_number(model, encoded, threshold):
    expected = model(**encoded, entropy_threshold=0.25, output_exit_layers=True)
    output = model(**encoded, entropy_threshold=threshold, output_exit_layers=True)
    np.testing.assert_array_equal(output.exit_layers, expected.exit_layers)
    np.testing.assert_array_equal(output.logits, expected.logits)


@pytest.mark.parametrize(
    "threshold, error",
    [(float("nan"), ValueError), (-0.1, ValueError), (1.5, ValueError), (True, TypeError), (np.bool_(False), TypeError),
     ("0.3", TypeError), ([0.3], TypeError), (np.array([0.3]), TypeError), (0.3 + 0j, TypeError)],
)
def test_entropy_threshold_refuses_what_is_not_a_threshold(model, folder, encoded, threshold, error):
    with pytest.raises(error, match="entropy_threshold"):
        model(**encoded, entropy_threshold=threshold)
    with pytest.raises(error, match="entropy_threshold"):
        model.entropy_threshold = threshold
    with pytest.raises(error, match="entropy_threshold"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), entropy_threshold=threshold)


def test_a_numpy_threshold_is_saved_as_a_plain_number(folder, tmp_path):
    model = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), entropy_threshold=np.float32(0.5))
    assert type(model.entropy_threshold) is float
    model.entropy_threshold = np.float64(0.25)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "early_exit_config.json").read_text())["entropy_threshold"] == 0.25


# ----- folders and files -----------------------------------------------------------------------------------------


def test_a_truncated_early_exit_config_names_the_file_and_the_fix(folder, tmp_path):
    damaged = _damaged_copy(folder, tmp_path, lambda path: _truncate(path / "early_exit_config.json"))
    with pytest.raises(ValueError, match=r"early_exit_config\.json is not valid JSON.*re-export"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(damaged))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda path: path.update(num_layers=2), "exit_temperatures"),
        (lambda path: path.update(exit_temperatures=[0.0, 1.0, 1.0]), "exit_temperatures"),
        (lambda path: path.update(entropy_threshold=None), "entropy_threshold"),
        (lambda path: path.pop("num_labels"), "num_labels"),
    ],
)
def test_an_invalid_early_exit_config_names_the_file(folder, tmp_path, edit, message):
    def damage(path):
        values = json.loads((path / "early_exit_config.json").read_text())
        edit(values)
        (path / "early_exit_config.json").write_text(json.dumps(values))

    damaged = _damaged_copy(folder, tmp_path, damage)
    with pytest.raises(ValueError, match=rf"early_exit_config\.json.*{message}"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(damaged))


@pytest.mark.parametrize(
    "damaged_file", ["exits/layer_2.xml", "exits/layer_2.bin", "exits/layer_1.bin", "exits/layer_3.xml", "openvino_model.bin"]
)
def test_a_truncated_segment_names_the_file_and_the_fix(folder, tmp_path, damaged_file):
    damaged = _damaged_copy(folder, tmp_path, lambda path: _truncate(path / damaged_file))
    with pytest.raises(ValueError) as raised:
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(damaged))
    assert str(damaged / damaged_file) in str(raised.value) and REEXPORT in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no OpenVINO trace shown


def test_a_segment_of_the_wrong_layer_is_refused(folder, tmp_path):
    def swap(path):
        for suffix in (".xml", ".bin"):
            shutil.copy(path / "exits" / f"layer_1{suffix}", path / "exits" / f"layer_2{suffix}")

    damaged = _damaged_copy(folder, tmp_path, swap)
    with pytest.raises(ValueError, match=r"layer_2\.xml is not the segment of layer 2"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(damaged))


def test_labels_of_config_and_exits_must_agree(folder, tmp_path):
    def relabel(path):
        values = json.loads((path / "early_exit_config.json").read_text())
        values["num_labels"] = 4
        (path / "early_exit_config.json").write_text(json.dumps(values))

    damaged = _damaged_copy(folder, tmp_path, relabel)
    with pytest.raises(ValueError, match=r"early_exit_config\.json has 4 labels but .*config\.json has 3"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(damaged))


@pytest.mark.parametrize(
    "model_id, kwargs, error, message",
    [
        ("missing-folder", {}, ValueError, "model_id.*not a folder"),
        ("a-file", {}, ValueError, "model_id.*not a folder"),
        (None, {}, TypeError, "model_id"),
        ("folder", {"subfolder": "nope"}, ValueError, "model_id.*nope.*not a folder"),
        ("folder", {"ov_config": "f32"}, TypeError, "ov_config"),
        ("folder", {"ov_config": {"NO_SUCH_PROPERTY": "1"}}, ValueError, "ov_config"),
        ("folder", {"device": "NO_SUCH_DEVICE"}, ValueError, "device='NO_SUCH_DEVICE'"),
        ("folder", {"compile_only": True}, ValueError, "compile_only"),
        ("folder", {"export": True}, ValueError, "already exported.*without `export=True`"),
    ],
)
def test_bad_from_pretrained_arguments_name_the_argument(folder, tmp_path, model_id, kwargs, error, message):
    (tmp_path / "a-file").write_text("not a model")
    paths = {"folder": str(folder), "a-file": str(tmp_path / "a-file"), "missing-folder": str(tmp_path / "missing")}
    with pytest.raises(error, match=message):
        OVEarlyExitModelForSequenceClassification.from_pretrained(paths.get(model_id, model_id), **kwargs)


def test_save_pretrained_to_a_file_raises_and_writes_nothing(model, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    for save_directory in (target, target / "below"):
        with pytest.raises(ValueError, match="save_directory"):
            model.save_pretrained(save_directory)
    assert target.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [target]


# ----- pipeline --------------------------------------------------------------------------------------------------


def test_pipeline_on_a_too_long_text_says_how_to_truncate(model, tokenizer):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="input_ids.*truncation=True, max_length=512"):
        classifier("red " * 600)
    assert classifier("red " * 600, truncation=True, max_length=512)[0]["label"] in {"alpha", "beta", "gamma"}


# ----- data files and calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, line",
    [
        ("text,label\nred rose,alpha\nsky and sea\ngreen,beta\n", "line 3"),  # a row without its label
        ("text,label\nred rose,alpha\nsky, sea,gamma\n", "line 3"),  # an unquoted comma
        ("text,label\nred rose,alpha\nblue sky,\n", "line 3"),  # an empty label
        ('text,label\nred rose,alpha\n"blue\nsky\n', "lines 3-4"),  # an unclosed quote swallows the label
    ],
)
def test_a_malformed_csv_names_the_file_the_columns_and_the_row(tmp_path, content, line):
    path = tmp_path / "validation.csv"
    path.write_text(content)
    for dataset, split in ((path, "train"), (tmp_path, "validation")):
        with pytest.raises(ValueError) as raised:
            load_labelled_texts(str(dataset), split)
        assert str(path) in str(raised.value) and line in str(raised.value)
        assert "['text', 'label']" in str(raised.value)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("data.csv", "sentence,label\nred,alpha\n", r"no column\(s\) \['text'\].*--text-column"),
        ("data.jsonl", '{"text": "red", "label": "alpha"}\n{"text": "sky", \n', r"data\.jsonl, line 2: not valid JSONL"),
        ("data.jsonl", '{"text": "red", "label": "alpha"}\n{"text": "sky", "label": null}\n', r"line 2: no value for \['label'\]"),
        ("data.json", '{"text": ["a", "b"], "label": ["x"]}', "different lengths"),
        ("data.csv", "text,label\ncaf\xe9,alpha\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_other_malformed_data_files_name_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as raised:
        load_labelled_texts(str(path))
    assert str(path) in str(raised.value)


def test_sweep_thresholds_checks_its_shapes():
    logits = np.zeros((3, 4, 2))
    with pytest.raises(ValueError, match="labels"):
        sweep_thresholds(logits, [0, 1], [1.0] * 3)
    with pytest.raises(ValueError, match="temperatures"):
        sweep_thresholds(logits, [0, 1, 0, 1], [1.0] * 2)
    with pytest.raises(ValueError, match="thresholds"):
        sweep_thresholds(logits, [0, 1, 0, 1], [1.0] * 3, thresholds=[1.5])


def test_early_exit_config_refuses_bad_values():
    with pytest.raises(ValueError, match="num_layers"):
        EarlyExitConfig(num_layers=0, num_labels=2)
    with pytest.raises(ValueError, match="exit_temperatures"):
        EarlyExitConfig(num_layers=2, num_labels=2, exit_temperatures=[1.0, float("nan")])
    assert type(EarlyExitConfig(num_layers=2, num_labels=2, entropy_threshold=np.float32(0.5)).entropy_threshold) is float
