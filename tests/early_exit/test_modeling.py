"""OVEarlyExitModelForSequenceClassification: exactness, batch == rows one by one, save/load, pipeline, errors."""

import numpy as np
import openvino
import pytest
import torch
from helpers.tiny_classifiers import FAMILIES, exported_folder, synthetic_task, trained_checkpoint
from transformers import AutoTokenizer

from optimum_dynexec.early_exit import EarlyExitCallStats, OVEarlyExitModelForSequenceClassification
from optimum_dynexec.early_exit.calibration import exit_layers_at, normalised_entropies

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
TEXTS = synthetic_task(24, seed=7)[0] + ["red", "the of and to in is it for on with as at by this that sky"]


def _mixed_thresholds(model, encoded):
    """Thresholds (quantiles of the layer-1/2 entropies) under which rows of the batch leave at different layers."""
    entropies = normalised_entropies(model.exit_logits_per_layer(**encoded), model.early_exit_config.exit_temperatures)
    return sorted({float(np.quantile(entropies[:-1], q)) for q in (0.2, 0.4, 0.6, 0.8)})


def test_threshold_zero_reproduces_the_plain_optimum_intel_model(folder, model, tokenizer):
    from optimum.intel import OVModelForSequenceClassification

    plain = OVModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32)
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    output = model(**encoded, entropy_threshold=0.0, output_exit_layers=True)
    np.testing.assert_allclose(output.logits, plain(**encoded).logits, atol=1e-5)
    assert (output.exit_layers == model.num_layers).all()


@pytest.mark.parametrize("padding_side", ["right"])
def test_batch_results_equal_rows_run_one_by_one(model, tokenizer, padding_side):
    tokenizer.padding_side = padding_side
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    thresholds = _mixed_thresholds(model, encoded)
    saw_mixed_exits = False
    for threshold in thresholds:
        batch = model(**encoded, entropy_threshold=threshold, output_exit_layers=True)
        saw_mixed_exits |= len(set(batch.exit_layers.tolist())) > 1
        for row, text in enumerate(TEXTS):
            single = model(**tokenizer([text], return_tensors="np"), entropy_threshold=threshold, output_exit_layers=True)
            assert batch.exit_layers[row] == single.exit_layers[0], (threshold, text)
            np.testing.assert_allclose(batch.logits[row], single.logits[0], atol=1e-5)
    tokenizer.padding_side = "right"
    assert saw_mixed_exits, "the fixture should make rows of one batch leave at different layers"


def test_runtime_exits_where_the_calibration_simulation_says(model, tokenizer):
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    entropies = normalised_entropies(model.exit_logits_per_layer(**encoded), model.early_exit_config.exit_temperatures)
    # Also thresholds at and a hair above a row's layer-1 entropy: there the runtime must compute the very same number
    # as the calibration (same formula, same precision, same temperatures), or that row's exit flips between the two.
    at_the_boundary = [float(value) for entropy in entropies[0] for value in (entropy, np.nextafter(entropy, 1.0))]
    for threshold in _mixed_thresholds(model, encoded) + at_the_boundary:
        output = model(**encoded, entropy_threshold=threshold, output_exit_layers=True)
        np.testing.assert_array_equal(output.exit_layers, exit_layers_at(entropies, threshold))


def test_single_rows_exit_where_the_calibration_simulation_says_even_at_the_threshold(model, tokenizer):
    """Rows alone take the single-row graph, whose float32 entropy is checked against numpy's float64 one: at a
    threshold equal to (or a hair above) a row's own layer-1 entropy the row must still decide as calibrated."""
    rows = [dict(tokenizer([text], return_tensors="np")) for text in TEXTS[:8]]
    for row in rows:
        entropies = normalised_entropies(model.exit_logits_per_layer(**row), model.early_exit_config.exit_temperatures)
        thresholds = [float(entropies[0, 0]), float(np.nextafter(entropies[0, 0], 1.0)), float(entropies[1, 0]) + 1e-3]
        for threshold in thresholds:
            output = model(**row, entropy_threshold=threshold, output_exit_layers=True)
            assert output.exit_layers[0] == exit_layers_at(entropies, threshold)[0], threshold


def test_a_single_row_is_one_openvino_call_unless_it_sits_at_the_threshold(model, tokenizer):
    row = dict(tokenizer([TEXTS[0]], return_tensors="np"))
    entropies = normalised_entropies(model.exit_logits_per_layer(**row), model.early_exit_config.exit_temperatures)
    far_from_every_entropy = float(np.clip(entropies[1, 0] + 0.5 * (entropies[0, 0] - entropies[1, 0]), 0.0, 1.0))
    for threshold in (0.0, far_from_every_entropy, 1.0):
        expected = exit_layers_at(entropies, threshold)[0]
        assert model(**row, entropy_threshold=threshold, output_exit_layers=True).exit_layers[0] == expected
        assert model.last_forward_stats == EarlyExitCallStats(openvino_calls=1, rows_rerun_on_segments=0)
    at_threshold = float(entropies[0, 0])
    output = model(**row, entropy_threshold=at_threshold, output_exit_layers=True)
    # A row whose entropy equals the threshold is decided on the segments: the graph's call, then one segment call per
    # layer the row runs.
    exit_layer = exit_layers_at(entropies, at_threshold)[0]
    assert output.exit_layers[0] == exit_layer > 1
    assert model.last_forward_stats == EarlyExitCallStats(openvino_calls=1 + exit_layer, rows_rerun_on_segments=1)


def test_threshold_zero_is_one_call_even_when_every_exit_is_sharp(folder, model, tokenizer):
    """Entropies within the graph's margin of 0 must not send a row to the segments at threshold 0, where no row can
    leave: with sharp exits (small temperatures) that would be most rows, each run twice."""
    row = dict(tokenizer([TEXTS[0]], return_tensors="np"))
    layer_logits = model.exit_logits_per_layer(**row)
    # The largest temperature that puts exit 1's entropy inside the margin (an extreme one would underflow to NaN).
    temperature = next(value for value in np.geomspace(1.0, 1e-3, 200)
                       if normalised_entropies(layer_logits[:1], [value])[0, 0] < 5e-5)
    sharp = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32, compile=False)
    sharp.early_exit_config.exit_temperatures = [float(temperature)] * sharp.num_layers  # before it compiles
    assert 0.0 < normalised_entropies(layer_logits[:1], [temperature])[0, 0] < 1e-4
    output = sharp(**row, entropy_threshold=0.0, output_exit_layers=True)
    assert output.exit_layers[0] == sharp.num_layers
    assert sharp.last_forward_stats == EarlyExitCallStats(openvino_calls=1, rows_rerun_on_segments=0)


def test_short_rows_run_on_fixed_length_graphs_that_answer_like_the_dynamic_one(folder, model, tokenizer):
    """Rows padded to a multiple of 8 tokens and run on a graph compiled for that length give the dynamic graph's
    exits and logits; only lengths up to 8 x `max_fixed_length_graphs` get such a graph, and a row gives the very same
    result on every call."""
    fixed = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32, compile=False)
    fixed.max_fixed_length_graphs = 1
    dynamic = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32, compile=False)
    dynamic.max_fixed_length_graphs = 0
    rows = [dict(tokenizer([text], return_tensors="np")) for text in TEXTS]
    lengths = [row["input_ids"].shape[1] for row in rows]
    assert min(lengths) <= 8 < max(lengths)  # some rows take the one fixed graph, others the dynamic one
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    for threshold in [0.0, 1.0] + _mixed_thresholds(model, encoded):
        for row in rows:
            expected = dynamic(**row, entropy_threshold=threshold, output_exit_layers=True)
            first, again = (fixed(**row, entropy_threshold=threshold, output_exit_layers=True) for _ in range(2))
            assert first.exit_layers[0] == expected.exit_layers[0]
            np.testing.assert_allclose(first.logits, expected.logits, atol=1e-5)
            np.testing.assert_array_equal(again.logits, first.logits)
    assert fixed.compiled_row_lengths == [8] and dynamic.compiled_row_lengths == []
    # Compiled with the model, before any call, so the first text of a length does not wait for a compilation.
    fresh = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32)
    longest = min(8 * fresh.max_fixed_length_graphs, fresh._max_sequence_length())
    assert fresh.compiled_row_lengths == list(range(8, longest + 1, 8)) and len(fresh.compiled_row_lengths) == 4


def test_threshold_one_leaves_every_row_at_the_first_layer(model, tokenizer):
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    first_layer_logits = model.exit_logits_per_layer(**encoded)[0]
    output = model(**encoded, entropy_threshold=1.0, output_exit_layers=True)
    assert (output.exit_layers == 1).all()
    np.testing.assert_allclose(output.logits, first_layer_logits, atol=1e-5)


def test_torch_in_torch_out_and_exit_layers_only_on_request(model, tokenizer):
    encoded = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    output = model(**encoded)
    assert isinstance(output.logits, torch.Tensor) and output.logits.shape == (3, 3)
    assert output.exit_layers is None


def test_save_pretrained_round_trip_keeps_threshold_and_plain_loading(model, tokenizer, tmp_path):
    from optimum.intel import OVModelForSequenceClassification

    model.entropy_threshold = 0.37
    model.save_pretrained(tmp_path)
    model.entropy_threshold = 0.0
    assert (tmp_path / "openvino_model.xml").is_file() and (tmp_path / "early_exit_config.json").is_file()
    assert sorted(path.name for path in (tmp_path / "exits").glob("*.xml")) == ["layer_1.xml", "layer_2.xml", "layer_3.xml"]
    reloaded = OVEarlyExitModelForSequenceClassification.from_pretrained(str(tmp_path), ov_config=F32)
    assert reloaded.entropy_threshold == pytest.approx(0.37)
    assert OVEarlyExitModelForSequenceClassification.from_pretrained(
        str(tmp_path), entropy_threshold=0.1
    ).entropy_threshold == pytest.approx(0.1)
    encoded = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    plain = OVModelForSequenceClassification.from_pretrained(str(tmp_path), ov_config=F32)
    np.testing.assert_allclose(reloaded(**encoded, entropy_threshold=0.0).logits, plain(**encoded).logits, atol=1e-5)


def test_from_pretrained_export_true_on_a_trained_checkpoint(tokenizer):
    model = OVEarlyExitModelForSequenceClassification.from_pretrained(
        str(trained_checkpoint("bert")), export=True, ov_config=F32, entropy_threshold=0.5
    )
    assert model.entropy_threshold == 0.5
    assert model(**tokenizer(["red rose"], return_tensors="np")).logits.shape == (1, 3)


def test_transformers_pipeline_labels_with_the_model_classes(model, tokenizer):
    from transformers import pipeline

    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
    results = classifier(["the red rose", "blue sky and sea"])
    assert [result["label"] in {"alpha", "beta", "gamma"} for result in results] == [True, True]
    assert all(0.0 < result["score"] <= 1.0 for result in results)


def test_load_in_8bit_compresses_every_segment(folder):
    model = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), load_in_8bit=True)
    for name, segment in model.exit_segments.items():
        weight_types = {op.get_output_element_type(0).get_type_name() for op in segment.get_ops() if op.get_type_name() == "Constant"}
        assert weight_types & {"i8", "u8"}, name
    with pytest.raises(TypeError, match="`quantization_config` must be an `OVWeightQuantizationConfig`"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), quantization_config="int8")


@pytest.mark.parametrize("family", [family for family in FAMILIES if family != "bert"])
def test_other_families_segments_reproduce_pytorch_exits(family, tmp_path):
    """Segments traced for RoBERTa/ALBERT/DistilBERT give PyTorch's logits at every exit (padded batch, f32), and so
    does the single-row graph chained from them."""
    from helpers.tiny_classifiers import base_classifier

    from optimum_dynexec.early_exit.checkpoint import load_exit_checkpoint
    from optimum_dynexec.early_exit.export import convert_segments, segment_names
    from optimum_dynexec.early_exit.single_row_graph import DECISION_MARGIN, build_single_row_graph
    from optimum_dynexec.early_exit.training import ExitTrainingArguments, forward_all_layers, train_exits

    checkpoint = tmp_path / "exits"
    train_exits(str(base_classifier(family)), *synthetic_task(32, 1), *synthetic_task(16, 2), checkpoint,
                ExitTrainingArguments(epochs=1, batch_size=16))
    encoder, heads, config = load_exit_checkpoint(checkpoint)
    batch = dict(AutoTokenizer.from_pretrained(checkpoint)(TEXTS[:6], padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        expected = [logits.numpy() for logits in forward_all_layers(encoder, heads, batch)]

    segments = convert_segments(encoder, heads)
    core = openvino.Core()
    hidden = None
    for layer, name in enumerate(segment_names(config.num_layers), start=1):
        compiled = core.compile_model(segments[name], "CPU", F32)
        if layer == 1:
            inputs = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
            if encoder.uses_token_type_ids:
                inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
        else:
            inputs = {"hidden_states": hidden, "attention_mask": batch["attention_mask"].numpy()}
        outputs = compiled(inputs)
        np.testing.assert_allclose(outputs["logits"], expected[layer - 1], atol=1e-4)
        hidden = outputs["hidden_states"] if layer < config.num_layers else None

    # The same segments chained into the single-row graph: threshold 1 leaves at exit 1, threshold 0 runs them all.
    single_row = core.compile_model(
        build_single_row_graph([segments[name] for name in segment_names(config.num_layers)],
                               config.exit_temperatures, config.num_labels), "CPU", F32)
    length = int(batch["attention_mask"][0].sum())
    row = {"input_ids": batch["input_ids"][:1, :length].numpy(), "attention_mask": batch["attention_mask"][:1, :length].numpy()}
    if encoder.uses_token_type_ids:
        row["token_type_ids"] = np.zeros_like(row["input_ids"])
    entropies = normalised_entropies(np.stack([logits[:1] for logits in expected]), config.exit_temperatures)[:, 0]
    for threshold, layer in ((1.0, 1), (0.0, config.num_layers)):
        outputs = single_row({**row, "entropy_threshold": np.array(threshold, dtype=np.float32)})
        assert abs(outputs["exit_layer"][0]) == layer
        if outputs["exit_layer"][0] < 0:  # flagged as decided within the margin (left to the segments): only if it is
            assert abs(entropies[layer - 1] - threshold) < 2 * DECISION_MARGIN
        np.testing.assert_allclose(outputs["logits"], expected[layer - 1][:1], atol=1e-4)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, e: m(**e, entropy_threshold=1.5), ValueError, "entropy_threshold"),
        (lambda m, e: m(**e, entropy_threshold="high"), TypeError, "entropy_threshold"),
        (lambda m, e: m(input_ids=e["input_ids"].astype(np.float32), attention_mask=e["attention_mask"]), TypeError, "input_ids"),
        (lambda m, e: m(input_ids=e["input_ids"], attention_mask=e["attention_mask"][:, :2]), ValueError, "attention_mask"),
        (lambda m, e: m(input_ids=e["input_ids"][0]), ValueError, "input_ids"),
    ],
)
def test_bad_inputs_raise_errors_that_name_the_argument(model, tokenizer, call, error, message):
    encoded = dict(tokenizer(TEXTS[:2], padding=True, return_tensors="np"))
    with pytest.raises(error, match=message):
        call(model, encoded)


def test_a_folder_without_exits_says_how_to_make_them(tmp_path):
    from optimum.intel import OVModelForSequenceClassification

    plain = OVModelForSequenceClassification.from_pretrained(str(exported_folder("bert")))
    plain.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-exits"):
        OVEarlyExitModelForSequenceClassification.from_pretrained(str(tmp_path))
