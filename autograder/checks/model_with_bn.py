"""build_model_with_bn's structure: the rules Exercise 3's checks apply, and what Exercise 4 says with them.

Exercise 3 (test_build_model_with_bn.py) checks the model's structure; Exercise 4
(test_training_improvement.py) trains it against the baseline and, when the lead falls short of the
margin, says what the structure shows (``shortfall``). Both read the rules here, so Exercise 4 never
blames what Exercise 3's checks find right: a model with BN between each Conv2D and its ReLU is not
told to check that, and an extra Dropout or a changed architecture is named as what lowers the lead.
"""

import difflib

from autograder.checks import answers
from autograder.models import view

FUNCTION = "build_model_with_bn"
EXPECTED_TOTAL = 35_210   # with conv biases
NON_TRAINABLE = 192   # moving mean and variance of 32 + 64 channels
# The baseline, reference_models.model_without_bn(), as view.layer_signatures reads it: also the BN
# model's layers without the BatchNormalization and ReLU of its blocks (tests/test_lead_message.py checks both).
BASELINE_LAYERS = ("Conv2D(32)", "MaxPooling2D", "Conv2D(64)", "MaxPooling2D", "Flatten", "Dense(softmax)")


def placement_errors(layers) -> list:
    """Where a Conv2D is not linear and followed at once by BatchNormalization, then a plain ReLU."""
    return view.placement_errors(layers) + answers.relu_errors(layers)


def expected_parameters(layers) -> int:
    """35,210, one fewer per filter of each Conv2D(use_bias=False) (BN's beta does the bias's job)."""
    return EXPECTED_TOTAL - view.bias_free_savings(layers)


def without_blocks(layers) -> list:
    """The model's layer signatures without the BatchNormalization and ReLU that each Conv2D's block
    adds: after a Conv2D, the first of each up to the next layer other than BN, ReLU or Dropout, in
    whatever order (their placement is placement_errors' business). What is left compares with
    BASELINE_LAYERS."""
    kept, block = [], set()
    for signature in view.layer_signatures(layers):
        if signature.startswith("Conv2D("):
            block = {"BatchNormalization", "ReLU"}
        elif signature in block:
            block.discard(signature)
            continue
        elif signature not in ("BatchNormalization", "ReLU") and not _is_dropout(signature):
            block = set()
        kept.append(signature)
    return kept


def _is_dropout(signature: str) -> bool:
    return signature.startswith(("Dropout(", "SpatialDropout"))


def baseline_differences(layers) -> tuple:
    """(layers added to the baseline's, other differences as phrases), beside the BN blocks."""
    ours = without_blocks(layers)
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


def shortfall(model) -> str:
    """What the structure of ``model`` (a view.ModelView) shows about a lead below the margin: first what
    Exercise 3's checks find, then what lowers the lead (the placement, Dropout, a changed architecture),
    or, when they find nothing, that the structure is not the cause."""
    layers = view.flat_layers(model)
    if not any(layer.kind == "BatchNormalization" for layer in layers):
        return ("Your model has no BatchNormalization layer (Exercise 3's checks find the same), so nothing "
                "speeds it up: put BatchNormalization between each Conv2D and its ReLU.")
    misplaced = placement_errors(layers)
    added, changed = baseline_differences(layers)
    total, _, frozen = view.parameter_counts(model)
    if total != expected_parameters(layers) or frozen != NON_TRAINABLE:
        changed.append(f"has {total:,} parameters ({frozen:,} non-trainable) where Exercise 3 expects "
                       f"{expected_parameters(layers):,} ({NON_TRAINABLE} non-trainable)")
    if misplaced:
        found = (f"Exercise 3's placement check finds: {'; '.join(misplaced)}. BN speeds training up between "
                 "each Conv2D and its ReLU; placed otherwise, it lowers the lead.")
    else:
        found = ("Exercise 3's checks find BatchNormalization between each Conv2D and its ReLU, so the placement "
                 "is not what lowers the lead.")
    if not (added or changed):
        if misplaced:
            return found
        return (f"{found} Nor do they find anything else that differs from the baseline beside BN and ReLU (its "
                "layers, the expected parameter counts): your model's structure is right, and its lead was low for "
                "this seed and budget (settings the checks do not read, such as initializers or "
                "BatchNormalization's momentum and epsilon, can also change it).")
    differences = ([f"adds {', '.join(added)}"] if added else []) + changed
    causes = []
    if any(_is_dropout(signature) for signature in view.layer_signatures(layers)):
        causes.append("Dropout, which the baseline lacks, slows early training and lowers the lead by itself")
    if changed or any(not _is_dropout(signature) for signature in added):
        causes.append("a changed architecture trains at another pace than the baseline it is compared with")
    causes = "; ".join(causes)
    return (f"{found} Beside BatchNormalization and ReLU, your model differs from the baseline "
            f"(build_model_without_bn): it {'; it '.join(differences)}. {causes[0].upper()}{causes[1:]}: "
            "keep the baseline's layers and add only BatchNormalization and ReLU to compare BN alone.")
