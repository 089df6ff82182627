"""Scoring only the rows a call needs: a `logits_rows` input that gathers the rows `lm_head` multiplies.

Used by every graph speculation runs: the paged target (`paged_session.py`), and EAGLE's tree-verifying target and
head (`eagle/graphs.py`). A prompt's prefill needs the logits of its last row only, a verification every row.
"""

LOGITS_ROWS_INPUT = "logits_rows"


def lm_head_matmul(ov_model):
    """The `MatMul` of `lm_head` in an exported causal LM graph (found from its `logits` output)."""
    logits = next(output for output in ov_model.outputs if "logits" in output.get_names())
    node = logits.get_node().input(0).get_source_output().get_node()
    while node.get_type_name() != "MatMul":  # past any scaling / conversion after lm_head
        if node.get_input_size() == 0:
            raise ValueError("Could not find the lm_head MatMul that produces the logits.")
        node = node.input(0).get_source_output().get_node()
    return node


def with_logits_rows(ov_model, row_axis: int = 1):
    """Give the graph a `logits_rows` input (`[k]` int64): `lm_head` scores only those of the call's rows (along
    `row_axis` of its input: 1 in optimum-intel's `[batch, rows, hidden]` graphs, 0 in paged-attention graphs).

    A prompt's prefill and the head's calls need the logits of their last row only, while `lm_head` is the largest
    matrix of a one-layer head (most of its per-row work, on every row of a prompt or of the accepted pairs fed back).
    `hidden_states` still covers every row. Changes `ov_model` in place; a graph that has the input is returned as is.
    """
    import openvino as ov
    import openvino.opset13 as opset

    if any(LOGITS_ROWS_INPUT in port.get_names() for port in ov_model.inputs):
        return ov_model
    rows = opset.parameter(ov.PartialShape([-1]), ov.Type.i64, name=LOGITS_ROWS_INPUT)
    rows.output(0).get_tensor().set_names({LOGITS_ROWS_INPUT})
    lm_head = lm_head_matmul(ov_model)
    features = lm_head.input(0).get_source_output()
    lm_head.input(0).replace_source_output(opset.gather(features, rows, axis=row_axis).output(0))
    ov_model.add_parameters([rows])
    ov_model.validate_nodes_and_infer_types()
    return ov_model
