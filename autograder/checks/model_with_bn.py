"""build_model_with_bn's structure: the rules Exercise 3's checks apply, and what Exercise 4 says with them.

Exercise 3 (test_build_model_with_bn.py) checks the model's structure; Exercise 4
(test_training_improvement.py) trains it against the baseline and, when the lead falls short of the
margin, says what the structure shows (``shortfall``). Both read the rules here, so Exercise 4 never
blames what Exercise 3's checks find right. The rule that makes Exercise 4 a comparison of BN alone:
beside BatchNormalization and ReLU, the model has the baseline's layers and nothing else (no Dropout,
which lowers the lead Exercise 4 measures), so every model Exercise 3 accepts is compared with the
baseline on BN alone.
"""

import difflib

from autograder.checks import answers
from autograder.models import view

FUNCTION = "build_model_with_bn"
EXPECTED_TOTAL = 35_210   # with conv biases
NON_TRAINABLE = 192   # moving mean and variance of 32 + 64 channels
# The baseline, reference_models.model_without_bn(), as view.layer_signatures reads it: also the BN
# model's layers without its BatchNormalization and ReLU layers (tests/test_lead_message.py checks both).
BASELINE_LAYERS = ("Conv2D(32)", "MaxPooling2D", "Conv2D(64)", "MaxPooling2D", "Flatten", "Dense(softmax)")


def placement_errors(layers) -> list:
    """Where a Conv2D is not linear and followed at once by BatchNormalization, then a plain ReLU."""
    return view.placement_errors(layers) + answers.relu_errors(layers)


def expected_parameters(layers) -> int:
    """35,210, one fewer per filter of each Conv2D(use_bias=False) (BN's beta does the bias's job)."""
    return EXPECTED_TOTAL - view.bias_free_savings(layers)


def beside_bn_and_relu(layers) -> list:
    """The model's layer signatures without its BatchNormalization layers, its ReLU layers and any
    Activation right after a BatchNormalization (a block's non-linearity, whose kind the placement check
    reads): what the architecture check compares with BASELINE_LAYERS. Where BN and ReLU sit is the
    placement check's business; an extra BN shows in the parameter counts."""
    kept, previous = [], None
    for signature in view.layer_signatures(layers):
        after_bn, previous = previous == "BatchNormalization", signature
        if signature in ("BatchNormalization", "ReLU") or (signature == "Activation" and after_bn):
            continue
        kept.append(signature)
    return kept


def _is_dropout(signature: str) -> bool:
    return signature.startswith(("Dropout(", "SpatialDropout"))


def baseline_differences(layers) -> tuple:
    """(layers added to the baseline's, other differences as phrases), beside BN and ReLU."""
    ours = beside_bn_and_relu(layers)
    added, changed = [], []
    matcher = difflib.SequenceMatcher(None, BASELINE_LAYERS, ours, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        theirs, mine = " -> ".join(BASELINE_LAYERS[i1:i2]), " -> ".join(ours[j1:j2])
        if tag == "insert":
            added += ours[j1:j2]
        elif tag == "delete":
            changed.append(f"has no {theirs}")
        elif tag == "replace":
            changed.append(f"has {mine} where the baseline has {theirs}")
    return added, changed


def architecture_errors(model) -> list:
    """What differs from the baseline beside BN and ReLU, as phrases after "it": layers added (Dropout
    included), missing or changed, then parameter counts other than expected. Empty when the model is
    the baseline with BN and ReLU added."""
    counts = _counts_error(model)
    return layer_errors(view.flat_layers(model)) + ([counts] if counts else [])


def layer_errors(layers) -> list:
    """Where the layers beside BN and ReLU are not the baseline's, as phrases after "it"."""
    added, changed = baseline_differences(layers)
    return ([f"adds {', '.join(added)}"] if added else []) + changed


def _counts_error(model) -> str | None:
    total, _, frozen = view.parameter_counts(model)
    expected = expected_parameters(view.flat_layers(model))
    if total == expected and frozen == NON_TRAINABLE:
        return None
    return (f"has {total:,} parameters ({frozen:,} non-trainable) where {expected:,} ({NON_TRAINABLE} "
            "non-trainable) are expected")


def shortfall(model) -> str:
    """What the structure of ``model`` (a view.ModelView) shows about a lead below the margin: first what
    Exercise 3's placement check finds, then what its architecture check finds and what that does to the
    lead (Dropout, a changed architecture), or, when they find nothing, that the structure is not the cause."""
    layers = view.flat_layers(model)
    if not any(layer.kind == "BatchNormalization" for layer in layers):
        return ("Your model has no BatchNormalization layer (Exercise 3's checks find the same), so nothing "
                "speeds it up: put BatchNormalization between each Conv2D and its ReLU.")
    misplaced = placement_errors(layers)
    if misplaced:
        found = (f"Exercise 3's placement check finds: {'; '.join(misplaced)}. BatchNormalization elsewhere than "
                 "between each Conv2D and its ReLU, or another non-linearity, trains at another pace than the "
                 "Conv -> BN -> ReLU model the margin was set for.")
    else:
        found = ("Exercise 3's placement check passes (BatchNormalization sits between each Conv2D and its ReLU), "
                 "so the placement is not what lowers the lead.")
    differences = architecture_errors(model)
    if not differences:
        if misplaced:
            return found
        return (f"{found} Nor does its architecture check find anything that differs from the baseline beside BN "
                "and ReLU (its layers, the expected parameter counts): your model's structure is right, and its "
                "lead was low for this seed and budget (settings the checks do not read, such as initializers, "
                "regularizers or BatchNormalization's momentum and epsilon, can also change it).")
    added, changed = baseline_differences(layers)
    causes = []
    if any(_is_dropout(signature) for signature in beside_bn_and_relu(layers)):
        causes.append("Dropout, which the baseline lacks, slows early training and lowers the lead by itself")
    if changed or _counts_error(model) or any(not _is_dropout(signature) for signature in added):
        causes.append("a changed architecture trains at another pace than the baseline it is compared with")
    causes = "; ".join(causes)
    return (f"{found} Exercise 3's architecture check finds that, beside BatchNormalization and ReLU, your model "
            f"differs from the baseline (build_model_without_bn): it {'; it '.join(differences)}. "
            f"{causes[0].upper()}{causes[1:]}: keep the baseline's layers and add only BatchNormalization and "
            "ReLU, as Exercise 3 requires.")
