"""Student data the grader parses is bounded before it is walked, and what it says is bounded and
escaped where results are built: no student-written byte gives a grader-side error, a huge
results.json, or a raw terminal escape downstream. Fast: hand-written configs, no Keras, no worker."""

import json
import time
from types import SimpleNamespace

import pytest

from autograder import grade
from autograder.checks import conftest as checks_conftest
from autograder.classroom import grades, store
from autograder.errors import ModelRefused, Side, StudentCodeError
from autograder.grading_run import RunFindings
from autograder.models import architecture, cost, vet, view
from autograder.results import CheckResult, Result, Status
from autograder.text import bounded

# What keras.Sequential([Input((28, 28, 1)), Conv2D(8, 3, use_bias=False), BatchNormalization(), ReLU(),
# Flatten(), Dense(10, activation="softmax")]).to_json() gives (Keras 3.15).
KERAS_SEQUENTIAL_JSON = (
    '{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "trainable": true, "dtype": '
    '{"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, '
    '"layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 28, 28, 1], '
    '"dtype": "float32", "sparse": false, "ragged": false, "name": "input_layer", "optional": false}, '
    '"registered_name": null}, {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "conv2d", '
    '"trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, '
    '"registered_name": null}, "filters": 8, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid", '
    '"data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "linear", "use_bias": '
    'false, "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": '
    '{"seed": null, "input_axes": null, "output_axes": null}, "registered_name": null}, "bias_initializer": '
    '{"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": null}, '
    '"kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null, "kernel_constraint": '
    'null, "bias_constraint": null}, "registered_name": null, "build_config": {"input_shape": [null, 28, 28, 1]}}, '
    '{"module": "keras.layers", "class_name": "BatchNormalization", "config": {"name": "batch_normalization", '
    '"trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, '
    '"registered_name": null}, "axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": true, "scale": true, '
    '"beta_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": '
    'null}, "gamma_initializer": {"module": "keras.initializers", "class_name": "Ones", "config": {}, '
    '"registered_name": null}, "moving_mean_initializer": {"module": "keras.initializers", "class_name": "Zeros", '
    '"config": {}, "registered_name": null}, "moving_variance_initializer": {"module": "keras.initializers", '
    '"class_name": "Ones", "config": {}, "registered_name": null}, "beta_regularizer": null, "gamma_regularizer": '
    'null, "beta_constraint": null, "gamma_constraint": null, "synchronized": false, "renorm": false, '
    '"renorm_clipping": null, "renorm_momentum": 0.99}, "registered_name": null, "build_config": {"input_shape": '
    '[null, 26, 26, 8]}}, {"module": "keras.layers", "class_name": "ReLU", "config": {"name": "re_lu", "trainable": '
    'true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, '
    '"registered_name": null}, "max_value": null, "negative_slope": 0.0, "threshold": 0.0}, "registered_name": '
    'null}, {"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flatten", "trainable": true, '
    '"dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": '
    'null}, "data_format": "channels_last"}, "registered_name": null, "build_config": {"input_shape": [null, 26, '
    '26, 8]}}, {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "trainable": true, '
    '"dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": '
    'null}, "units": 10, "activation": "softmax", "use_bias": true, "kernel_initializer": {"module": '
    '"keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null, "input_axes": null, '
    '"output_axes": null}, "registered_name": null}, "bias_initializer": {"module": "keras.initializers", '
    '"class_name": "Zeros", "config": {}, "registered_name": null}, "kernel_regularizer": null, '
    '"bias_regularizer": null, "kernel_constraint": null, "bias_constraint": null, "quantization_config": null}, '
    '"registered_name": null, "build_config": {"input_shape": [null, 5408]}}], "build_input_shape": [null, 28, 28, '
    '1]}, "registered_name": null, "build_config": {"input_shape": [null, 28, 28, 1]}, "compile_config": {}}'
)

ESCAPES = "\x1b[1A\x1b[2K\rPASS 3.00/3.00 forged\x1b]0;title\x07\x9b\u202e"     # redraws the line above
NO_RAW = ("\x1b", "\r", "\x07", "\x9b", "\u202e")


def _hand_written(**dense):
    """A small Sequential config as to_json() writes it, its Dense layer's config updated by ``dense``."""
    config = json.loads(KERAS_SEQUENTIAL_JSON)
    config["config"]["layers"][-1]["config"].update(dense)
    return config


def _nested(depth: int) -> str:
    """A model's JSON with a list nested ``depth`` deep in one of its layers' configs."""
    config = json.loads(KERAS_SEQUENTIAL_JSON)
    config["config"]["layers"][-1]["config"]["extra"] = "NESTED"
    return json.dumps(config).replace('"NESTED"', "[" * depth + "]" * depth)


class _Worker:
    """What the checks' fixtures need of a Submission: the student's model JSON, read by parse_config
    (as Submission.model_config does), and no cell errors."""

    def __init__(self, text: str):
        self.text = text

    def model_config(self, function, **kwargs):
        return vet.parse_config(self.text)

    def cell_errors(self):
        return []


def _fixtures(text: str):
    """(model_config, student_model) as the checks get them, on a worker that answers ``text``."""
    run = SimpleNamespace(findings=RunFindings())
    model_config = checks_conftest.model_config.__wrapped__(_Worker(text), run)
    return model_config, checks_conftest.student_model.__wrapped__(model_config), run


# --- model configs -------------------------------------------------------------------------------

def test_a_list_nested_800_deep_in_a_config_is_refused_when_parsed():
    with pytest.raises(ModelRefused, match="nested more than 64 levels"):
        vet.parse_config(_nested(800))


def test_a_list_nested_100000_deep_is_refused_when_parsed_not_a_recursion_error():
    with pytest.raises(ModelRefused, match="not JSON the grader can read"):
        vet.parse_config(_nested(100_000))


def test_a_config_with_300000_values_is_refused_when_parsed():
    config = json.loads(KERAS_SEQUENTIAL_JSON)
    config["config"]["layers"][-1]["config"]["extra"] = [0] * 300_000
    with pytest.raises(ModelRefused, match="more than 200,000 values"):
        vet.parse_config(json.dumps(config))


def test_json_that_is_not_an_object_or_too_long_is_refused_when_parsed():
    for text in ("[1, 2]", "null", "{", "not json", " " * (vet.MAX_CONFIG_CHARS + 1)):
        with pytest.raises(ModelRefused):
            vet.parse_config(text)


def test_a_keras_sequential_config_still_reads_as_before():
    config = vet.parse_config(KERAS_SEQUENTIAL_JSON)
    vet.vet_config(config)
    read = view.view(config)
    assert read.input_shape == (None, 28, 28, 1) and read.output_shape == (None, 10)
    assert view.parameter_counts(read) == (54_194, 54_178, 16)    # 72 + 32 + 54,090; BN's moving 16
    assert [layer.kind for layer in view.flat_layers(read)] == [
        "Conv2D", "BatchNormalization", "ReLU", "Flatten", "Dense"]
    assert architecture.fingerprint(config) == architecture.fingerprint(json.loads(KERAS_SEQUENTIAL_JSON))


def test_the_fixtures_record_the_architecture_of_a_keras_config():
    model_config, student_model, run = _fixtures(KERAS_SEQUENTIAL_JSON)
    assert student_model("build_model_with_bn").parameters == 54_194
    assert (run.findings.architectures["build_model_with_bn"]
            == architecture.fingerprint(json.loads(KERAS_SEQUENTIAL_JSON)))


def test_a_list_nested_800_deep_is_a_refused_model_in_the_checks_fixture():
    model_config, student_model, run = _fixtures(_nested(800))
    for _ in range(2):     # remembered, and raised again
        with pytest.raises(ModelRefused):
            student_model("build_model_with_bn")
    assert run.findings.architectures == {}


def test_a_dtype_whose_config_is_a_list_is_a_refused_model_not_an_attribute_error():
    text = json.dumps(_hand_written(dtype={"config": [1]}))
    model_config, student_model, _ = _fixtures(text)
    with pytest.raises(ModelRefused, match="dtype policy"):
        student_model("build_model_with_bn")
    with pytest.raises(ModelRefused, match="dtype policy"):       # the training check's bound
        with vet.reading_student_config():
            cost.check_bounds(model_config("build_model_with_bn"))


def test_a_config_that_skipped_parse_config_is_still_refused_by_the_fixture():
    """Nested 800 deep as a dict (not through parse_config): the fingerprint's RecursionError is the student's."""
    deep = []
    for _ in range(800):
        deep = [deep]
    config = _hand_written(extra=deep)
    worker = _Worker("")
    worker.model_config = lambda function, **kwargs: config
    model_config = checks_conftest.model_config.__wrapped__(worker, SimpleNamespace(findings=RunFindings()))
    with pytest.raises(ModelRefused, match="could not read the model's configuration"):
        model_config("build_model_with_bn")


def test_reading_student_config_turns_an_unexpected_error_into_a_refused_model():
    with pytest.raises(ModelRefused, match="could not read the model's configuration: KeyError"):
        with vet.reading_student_config():
            {}["filters"]
    with pytest.raises(ImportError):          # ours: stays visible
        with vet.reading_student_config():
            raise ImportError("no keras")
    with pytest.raises(StudentCodeError):     # the student's already: unchanged
        with vet.reading_student_config():
            raise StudentCodeError("raised", "it raised")


def test_malformed_layer_fields_are_refused_with_a_precise_message():
    cases = [
        ({"class_name": ["Dense"]}, "not a built-in layer"),
        ({"config": {"name": "d", "units": 10, "dtype": {"config": "float64"}}}, "dtype policy"),
    ]
    for change, match in cases:
        config = _hand_written()
        config["config"]["layers"][-1].update(change)
        with pytest.raises(ModelRefused, match=match):
            view.view(config)
    dropout = _hand_written()
    dropout["config"]["layers"].insert(-1, {"class_name": "Dropout", "module": "keras.layers",
                                            "config": {"name": "drop", "rate": [0.5]}})
    with pytest.raises(ModelRefused, match="rate"):
        view.view(dropout)


def test_a_conv2d_with_an_int_kernel_size_reads_as_keras_rebuilds_it():
    config = _hand_written()
    conv = config["config"]["layers"][1]["config"]
    conv.update(kernel_size=3, strides=1, filters=[8])
    del conv["padding"]
    layer = view.flat_layers(view.view(config))[0]
    assert (layer.config["filters"], layer.config["kernel_size"], layer.config["strides"],
            layer.config["padding"]) == (8, [3, 3], [1, 1], "valid")


def test_a_functional_connection_with_a_list_node_index_is_refused_not_unhashable():
    from autograder.models.cost import _node_inputs
    tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": ["conv", [0], 0]}}
    with pytest.raises(ModelRefused, match="malformed connection"):
        _node_inputs({"args": [tensor]})


def test_a_functional_config_listing_its_layers_backwards_is_read_in_linear_time():
    """990 layers listed last-first and 15,000 calls of a missing layer (was 15 s: one pass per layer)."""
    def tensor(name):
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}
    chain = [{"class_name": "Activation", "name": f"a{i}", "config": {"activation": "relu"},
              "inbound_nodes": [{"args": [tensor("in" if i == 0 else f"a{i - 1}")]}]} for i in range(990)]
    junk = {"class_name": "Activation", "name": "junk", "config": {},
            "inbound_nodes": [{"args": [tensor("missing")]}] * 15_000}
    layers = [{"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 4]}, "inbound_nodes": []},
              *reversed(chain), junk]
    config = vet.parse_config(json.dumps({"class_name": "Functional", "config": {
        "name": "m", "layers": layers, "input_layers": [["in", 0, 0]], "output_layers": [["a989", 0, 0]]}}))
    started = time.monotonic()
    with pytest.raises(ModelRefused, match="junk layer, which is not connected"):   # it never gets its input
        cost.check_bounds(config)
    assert time.monotonic() - started < 3.0
    config["config"]["layers"].pop()
    assert cost.check_bounds(config).output_shape == (4,)


def test_check_failure_of_a_refused_model_is_the_students():
    message, side = grade.check_failure(ModelRefused("the grader could not read the model's configuration: x"))
    assert side is Side.STUDENT and message.startswith("the grader could not read")


# --- messages --------------------------------------------------------------------------------------

def _huge(n=2_000_000) -> str:
    return (ESCAPES * (n // len(ESCAPES) + 1))[:n]


def test_a_check_message_of_2_mb_with_escape_sequences_is_made_safe():
    row = CheckResult("manual_batch_norm::test_x", "manual_batch_norm", 0.0, 3.0, False, _huge())
    assert len(row.message) <= 4000
    assert not any(c in row.message for c in NO_RAW)
    assert "\\x1b" in row.message and "cut at" in row.message


def test_a_message_set_after_the_row_is_built_is_bounded_too():
    row = CheckResult("manual_batch_norm::test_x", "manual_batch_norm", 0.0, 3.0, False, "the check did not run")
    row.message = _huge()                     # as grade.Collector fills it in
    assert len(row.message) <= 4000 and "\x1b" not in row.message


def test_every_text_of_a_result_is_made_safe():
    result = Result([], Status.ERROR, _huge(), Side.STUDENT, notes=[_huge()])
    assert len(result.error) <= 4000 and len(result.notes[0]) <= 4000
    assert not any(c in result.error + result.notes[0] for c in NO_RAW)


def test_results_json_of_30_checks_with_2_mb_messages_is_under_100_kb():
    rows = [CheckResult(f"manual_batch_norm::test_{i}", "manual_batch_norm", 0.0, 1.0, False, _huge())
            for i in range(30)]
    text = Result(rows, Status.ERROR, _huge(), Side.STUDENT, notes=[_huge()]).to_json()
    assert len(text.encode()) < 100_000
    assert not any(c in text for c in NO_RAW)


def test_a_result_read_back_is_unchanged():
    rows = [CheckResult("manual_batch_norm::test_x", "manual_batch_norm", 0.0, 3.0, False, _huge())]
    result = Result(rows, Status.ERROR, _huge(), Side.STUDENT, notes=["converted", _huge()])
    again = Result.from_json(result.to_json())
    assert again.to_json() == result.to_json()
    assert bounded(result.error) == result.error


def test_grades_csv_of_a_row_with_escape_sequences_has_no_raw_control_character():
    result = Result([CheckResult("manual_batch_norm::test_x", "manual_batch_norm", 0.0, 3.0, False, _huge())],
                    Status.ERROR, _huge(), Side.STUDENT)
    message = store.message_for([f"graded sub/{ESCAPES}.ipynb (not named batchnorm.ipynb)"], result)
    text = grades.grades_csv_text([grades.Row.of("student\x1b[2K", result, message)])
    assert not any(ord(c) < 0x20 and c != "\n" or c in NO_RAW for c in text)
    assert len(text) < 10_000
    assert "student\\x1b[2K" in text


def test_the_feedback_page_carries_no_raw_escape():
    from autograder import feedback
    result = Result([CheckResult("manual_batch_norm::test_x", "manual_batch_norm", 0.0, 3.0, False, _huge())],
                    Status.ERROR, _huge(), Side.STUDENT)
    page = feedback.render(result, student="s\x1b", message=_huge())
    assert not any(c in page for c in NO_RAW)
    assert len(page) < 50_000
