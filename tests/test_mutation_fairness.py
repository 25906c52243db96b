"""A fairness test that no table feeds (issue 23): single-slip mutants of plain answers, graded by the real checks.

For each NumPy exercise this file holds a plain implementation written from the exercise's
specification (the check module's docstring, reference.py), each line annotated with the parts of the
specification it computes (``# spec: <labels>``). Generic mutation operators (below) change one site
of one implementation at a time; every mutant is graded by the hidden checks in the sandbox, one
mutant of each exercise per notebook. No table of known mistakes is read: whether a mutant is
equivalent, central, or no answer at all is decided by running it here on probe inputs of the checks'
shapes, against the implementations and the central misconceptions written below.

What a fair grader owes a single slip (the assertions):
(a) a mutant that is not the exercise's central mistake keeps at least half of the exercise's points;
(b) the float32 mutant (everything computed in float32) keeps every point;
(c) every check a mutant fails concerns at least one of its labels (CHECK_LABELS): the check's message
    names a property the mutant really changes;
(d) a mutant that does not change the behaviour (equivalent on the probes) keeps every point;
and a mutant that is no answer on any probe (it raises, returns the wrong shape, or returns None,
zeros, a constant or an input unchanged) scores nothing.

Run with -s for the summary (operators x exercises, gradings, every mutant's points). The tests that read
the grades are slow (make test), the others fast.
"""

import ast
import copy
import inspect
import re
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from autograder.exercises import BY_ID, Kind, of_kind

from conftest import check_cells

EXERCISES = tuple(e.id for e in of_kind(Kind.NUMPY))
POINTS = {e: BY_ID[e].points for e in EXERCISES}


# --- the plain implementations, from the specifications ------------------------------------------------------

def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    axes = tuple(range(x.ndim - 1))                     # spec: axes
    mean = x.mean(axis=axes, keepdims=True)             # spec: axes centre
    var = x.var(axis=axes, keepdims=True)               # spec: axes variance divisor
    std = np.sqrt(var + epsilon)                        # spec: divisor variance epsilon
    centred = x - mean                                  # spec: centre
    x_hat = centred / std                               # spec: centre divisor
    return gamma * x_hat + beta                         # spec: affine


def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    axes = tuple(range(x.ndim - 1))                     # spec: axes dx dgamma dbeta
    mean = x.mean(axis=axes, keepdims=True)             # spec: axes dx dgamma
    var = x.var(axis=axes, keepdims=True)               # spec: axes divisor dx dgamma
    std = np.sqrt(var + epsilon)                        # spec: divisor variance epsilon dx dgamma
    x_hat = (x - mean) / std                            # spec: dx dgamma variance_path
    dx_hat = dout * gamma                               # spec: dx
    through_mean = dx_hat.mean(axis=axes, keepdims=True)                    # spec: dx mean_path
    through_var = x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)   # spec: dx variance_path
    dx_centred = dx_hat - through_mean                  # spec: dx mean_path
    dx = (dx_centred - through_var) / std               # spec: dx variance_path divisor
    dgamma = (dout * x_hat).sum(axis=axes)              # spec: dgamma axes
    dbeta = dout.sum(axis=axes)                         # spec: dbeta axes
    return dx, dgamma, dbeta


def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    new_mean = momentum * moving_mean + (1 - momentum) * batch_mean     # spec: mean momentum
    new_var = momentum * moving_var + (1 - momentum) * batch_var        # spec: variance momentum
    return new_mean, new_var


def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    std = np.sqrt(moving_var + epsilon)                 # spec: statistics divisor epsilon
    centred = x - moving_mean                           # spec: statistics centre
    x_hat = centred / std                               # spec: centre divisor
    return gamma * x_hat + beta                         # spec: affine


def debiased_moving_statistic(moving, initial, momentum, steps):
    left = momentum ** steps                            # spec: exponent initial renormalize
    batches = moving - left * initial                   # spec: initial broadcast
    return batches / (1 - left)                         # spec: renormalize


def population_statistics(batch_means, batch_vars, batch_sizes):
    weights = batch_sizes / batch_sizes.sum()                       # spec: weights
    mean = (weights[:, None] * batch_means).sum(axis=0)             # spec: mean weights
    spread = (batch_means - mean) ** 2                              # spec: between
    var = (weights[:, None] * (batch_vars + spread)).sum(axis=0)    # spec: variance weights between
    return mean, var


def group_norm(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3):
    grouped = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)      # spec: groups
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)         # spec: samples groups
    mean = grouped.mean(axis=axes, keepdims=True)                          # spec: samples groups centre
    var = grouped.var(axis=axes, keepdims=True)                            # spec: samples groups variance divisor
    std = np.sqrt(var + epsilon)                                           # spec: divisor variance epsilon
    centred = grouped - mean                                               # spec: centre
    x_hat = (centred / std).reshape(x.shape)                               # spec: centre divisor groups
    return gamma * x_hat + beta                                            # spec: affine


def group_norm_backward(dout, x, groups, gamma, epsilon=1e-3):
    grouped = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)        # spec: groups dx dgamma
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)           # spec: samples groups dx dgamma
    mean = grouped.mean(axis=axes, keepdims=True)                            # spec: samples groups dx dgamma
    var = grouped.var(axis=axes, keepdims=True)                # spec: samples groups variance divisor dx dgamma
    std = np.sqrt(var + epsilon)                                             # spec: divisor variance epsilon dx dgamma
    x_hat = (grouped - mean) / std                                           # spec: dx dgamma variance_path
    dx_hat = (dout * gamma).reshape(grouped.shape)                           # spec: dx groups
    through_mean = dx_hat.mean(axis=axes, keepdims=True)                     # spec: dx mean_path samples groups
    through_var = x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)    # spec: dx variance_path samples groups
    dx = (dx_hat - through_mean - through_var) / std                         # spec: dx mean_path variance_path divisor
    sums = tuple(range(x.ndim - 1))                                          # spec: sums dgamma dbeta
    dgamma = (dout * x_hat.reshape(x.shape)).sum(axis=sums)                  # spec: dgamma sums
    dbeta = dout.sum(axis=sums)                                              # spec: dbeta sums
    return dx.reshape(x.shape), dgamma, dbeta


RIGHT = {name: inspect.getsource(globals()[name]) for name in EXERCISES}


# --- what each check is about, from the specification (the rewrite's check names) ----------------------------

CHECK_LABELS = {
    "manual_batch_norm": {
        "test_normalizes_each_feature_over_the_batch": {"axes", "centre"},
        "test_normalizes_conv_activations_per_channel": {"axes", "centre"},
        "test_divides_by_the_standard_deviation": {"divisor", "variance"},
        "test_uses_the_biased_variance": {"variance"},
        "test_adds_epsilon_inside_the_square_root": {"epsilon", "divisor"},
        "test_applies_per_feature_gamma_and_beta": {"affine"},
        "test_leaves_its_input_unmodified": {"inputs"},
        "test_returns_a_float_array": {"dtype"},
    },
    "batch_norm_backward": {
        "test_dx_flows_through_the_batch_mean": {"dx", "mean_path"},
        "test_dx_flows_through_the_batch_variance": {"dx", "variance_path"},
        "test_dgamma_sums_dout_times_x_hat": {"dgamma", "dbeta"},
        "test_conv_activations_sum_per_channel": {"axes", "dgamma", "dbeta"},     # it reads dgamma and dbeta
        "test_uses_the_epsilon_it_is_given": {"epsilon", "divisor"},
        "test_returns_float_arrays": {"dtype"},
        "test_leaves_its_inputs_unmodified": {"inputs"},
    },
    "update_moving_statistics": {
        "test_updates_the_mean_with_the_default_momentum": {"mean", "momentum"},
        "test_updates_the_variance_with_the_default_momentum": {"variance", "momentum"},
        "test_uses_the_momentum_it_is_given": {"momentum"},
        "test_leaves_its_inputs_unmodified": {"inputs"},
    },
    "batch_norm_inference": {
        "test_normalizes_with_the_moving_statistics": {"statistics", "centre"},
        "test_divides_by_the_standard_deviation": {"divisor"},
        "test_adds_epsilon_inside_the_square_root": {"epsilon"},
        "test_applies_per_channel_gamma_and_beta": {"affine"},
        "test_returns_a_float_array": {"dtype"},
        "test_leaves_its_inputs_unmodified": {"inputs"},
    },
    "debiased_moving_statistic": {
        "test_removes_what_is_left_of_a_non_zero_initial_value": {"initial"},
        "test_renormalizes_by_the_weight_of_the_batches": {"renormalize", "initial"},   # a - b: b is initial's
        "test_counts_one_factor_of_momentum_per_update": {"exponent", "initial"},      # b / a: initial's share
        "test_broadcasts_and_leaves_its_inputs_unmodified": {"inputs", "broadcast"},
    },
    "population_statistics": {
        "test_adds_the_spread_of_the_batch_means_to_the_variance": {"between"},
        "test_averages_the_batch_means": {"mean"},
        "test_weighs_each_batch_by_its_size": {"weights"},
        "test_uses_the_biased_variance_of_the_union": {"variance"},
        "test_returns_float_arrays_and_leaves_its_inputs_unmodified": {"dtype", "inputs"},
    },
    "group_norm": {
        "test_normalizes_each_sample_on_its_own": {"samples", "centre"},     # normalized: centred on its own mean
        "test_groups_consecutive_channels": {"groups", "centre"},      # as manual's axes checks: x - the group mean
        "test_uses_the_biased_variance": {"variance", "samples"},     # 1 / std over each sample's values
        "test_uses_the_epsilon_it_is_given": {"epsilon", "samples"},  # 1 / sqrt(var + eps), each sample's var
        "test_applies_per_channel_gamma_and_beta": {"affine"},
        "test_returns_a_float_array": {"dtype"},
    },
    "group_norm_backward": {
        "test_dx_flows_through_the_group_mean": {"dx", "mean_path"},
        "test_dx_flows_through_the_group_variance": {"dx", "variance_path"},
        "test_each_sample_on_its_own": {"samples"},
        "test_groups_consecutive_channels": {"groups"},
        "test_dgamma_and_dbeta_sum_per_channel": {"dgamma", "dbeta", "sums"},
        "test_divides_by_sqrt_of_the_biased_variance_plus_epsilon": {"divisor", "variance", "epsilon"},
        "test_returns_float_arrays_and_leaves_its_inputs_unmodified": {"dtype", "inputs"},
    },
}

# The label an operator adds to those of the line it changes ("none": a label no check has).
OPERATOR_LABELS = {"ddof": {"variance"}, "epsilon": {"epsilon"}, "axis": {"axes"}, "keepdims": {"axes"},
                   "float32": {"none"}, "in_place": {"inputs"}, "missing_term": set(), "exponent": {"exponent"},
                   "grouping": {"groups"}}
OPERATORS = tuple(OPERATOR_LABELS)


# --- the mutation operators ---------------------------------------------------------------------------------

@dataclass
class Mutant:
    exercise: str
    operator: str
    site: str                 # where and what: "L4 `x.var(...)` -> `x.var(..., ddof=1)`"
    code: str
    labels: frozenset
    kind: str = ""            # equivalent, central, no_answer, partial, ordinary (see classify)
    why: str = ""             # what made it no answer (or a partial one)
    points: float = 0.0
    failing: list = field(default_factory=list)   # (check name, points lost, message)

    @property
    def name(self) -> str:
        return f"{self.exercise}/{self.operator} {self.site}"


class Source:
    """A function's source, its ``# spec:`` labels per line, and splicing by ast positions."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = np.cumsum([0] + [len(line) for line in self.lines]).tolist()
        self.tree = ast.parse(text)
        self.function = self.tree.body[0]
        self.labels = {}
        for number, line in enumerate(self.lines, 1):
            found = re.search(r"#\s*spec:\s*(.*)$", line)
            self.labels[number] = frozenset(found.group(1).split()) if found else frozenset()

    def offset(self, line, col):
        return self.starts[line - 1] + col

    def span(self, node):
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def replace(self, start, end, new) -> str:
        return self.text[:start] + new + self.text[end:]

    def nodes(self, kind):
        return [n for n in ast.walk(self.function) if isinstance(n, kind)]

    def parameters(self) -> list:
        return [a.arg for a in self.function.args.args]


def _short(text, n=60):
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _site(src, node, new_text):
    return f"L{node.lineno - src.function.lineno} `{_short(src.segment(node))}` -> `{_short(new_text)}`"


def _splice(src, node, new_text):
    """(site, code, changed line) for ``node`` replaced by ``new_text``."""
    start, end = src.span(node)
    return _site(src, node, new_text), src.replace(start, end, new_text), node.lineno


def _call_name(call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def op_ddof(src):
    """ddof=1 added to each .var() call."""
    for call in src.nodes(ast.Call):
        if _call_name(call) == "var" and not any(k.arg == "ddof" for k in call.keywords):
            text = src.segment(call)
            yield _splice(src, call, text[:-1] + ", ddof=1)")


def _is_epsilon(node) -> bool:
    return isinstance(node, ast.Name) and "eps" in node.id


def op_epsilon(src):
    """sqrt(A + eps) -> sqrt(A) + eps."""
    for call in src.nodes(ast.Call):
        if _call_name(call) == "sqrt" and len(call.args) == 1 and isinstance(call.args[0], ast.BinOp) \
                and isinstance(call.args[0].op, ast.Add):
            left, right = call.args[0].left, call.args[0].right
            if _is_epsilon(right) or _is_epsilon(left):
                a, eps = (left, right) if _is_epsilon(right) else (right, left)
                yield _splice(src, call, f"({src.segment(call.func)}({src.segment(a)}) + {src.segment(eps)})")


def _receiver(src, call) -> str:
    """The array a reduction reduces: x in x.mean(...), a in np.sum(a, ...)."""
    func = call.func
    if isinstance(func, ast.Attribute) and not (isinstance(func.value, ast.Name) and func.value.id == "np"):
        return src.segment(func.value)
    return src.segment(call.args[0])


def op_axis(src):
    """Each axis= argument replaced by 0, and by the per-sample axes (every axis but the first)."""
    for call in src.nodes(ast.Call):
        for keyword in call.keywords:
            if keyword.arg != "axis":
                continue
            original = src.segment(keyword.value)
            receiver = _receiver(src, call)
            receiver = receiver if receiver.isidentifier() else f"({receiver})"
            for other in ("0", f"tuple(range(1, {receiver}.ndim))"):
                if other != original:
                    yield _splice(src, keyword.value, other)


def op_keepdims(src):
    """keepdims=True dropped from each call that has it."""
    for call in src.nodes(ast.Call):
        items = sorted([*call.args, *call.keywords], key=lambda n: (n.lineno, n.col_offset))
        for i, keyword in enumerate(items):
            if isinstance(keyword, ast.keyword) and keyword.arg == "keepdims" and i > 0:
                start = src.offset(items[i - 1].end_lineno, items[i - 1].end_col_offset)
                end = src.offset(keyword.end_lineno, keyword.end_col_offset)
                call_start, call_end = src.span(call)
                new_call = src.text[call_start:start] + src.text[end:call_end]
                yield _site(src, call, new_call), src.replace(start, end, ""), call.lineno


def _body_indent(src) -> tuple:
    first = src.function.body[0]
    return " " * first.col_offset, src.offset(first.lineno, 0)


def op_float32(src):
    """Every float argument (arrays and Python floats, not ints) cast to float32 at the start."""
    indent, at = _body_indent(src)
    casts = "".join(f"{indent}{p} = np.asarray({p}, dtype=np.float32) if isinstance({p}, (float, np.ndarray)) "
                    f"else {p}\n" for p in src.parameters())
    yield "the arguments cast to float32", src.text[:at] + casts + src.text[at:], None


def op_in_place(src):
    """The result computed as before (and copied), then the first array argument changed in place."""
    for ret in src.nodes(ast.Return):
        indent = " " * ret.col_offset
        arguments = ", ".join(src.parameters())
        block = (f"_result = {src.segment(ret.value)}\n"
                 f"{indent}_result = tuple(np.array(r, copy=True) for r in _result) if isinstance(_result, tuple) "
                 f"else np.array(_result, copy=True)\n"
                 f"{indent}for _argument in ({arguments},):\n"
                 f"{indent}    if isinstance(_argument, np.ndarray):\n"
                 f"{indent}        _argument += 1\n"
                 f"{indent}        break\n"
                 f"{indent}return _result")
        start, end = src.span(ret)
        end = src.offset(ret.end_lineno + 1, 0) - 1          # the line's comment too: the block computes nothing new
        yield f"L{ret.lineno - src.function.lineno} first array argument += 1 before `return`", \
            src.replace(start, end, block), None


def op_missing_term(src):
    """A term left out of a sum: A + B -> A and A - B -> A, the term added or subtracted dropped. Not the
    first operand (dropping it flips a sign or leaves only the correction), and not a numeric constant
    (x.ndim - 1 counts axes; it is no term of a formula)."""
    for node in src.nodes(ast.BinOp):
        if isinstance(node.op, (ast.Add, ast.Sub)) and not isinstance(node.right, ast.Constant):
            yield _splice(src, node, f"({src.segment(node.left)})")


def op_exponent(src):
    """a ** b -> a ** (b - 1)."""
    for node in src.nodes(ast.BinOp):
        if isinstance(node.op, ast.Pow):
            start, end = src.span(node)
            r_start, r_end = src.span(node.right)
            text = src.text[start:r_start] + f"({src.text[r_start:r_end]} - 1)" + src.text[r_end:end]
            yield _splice(src, node, text)


def op_grouping(src):
    """group norm's reshape to (..., groups, C // groups): to (..., C // groups, groups), and to (N, groups, -1)."""
    if src.function.name not in ("group_norm", "group_norm_backward"):
        return
    for call in src.nodes(ast.Call):
        if _call_name(call) == "reshape" and len(call.args) >= 2 and "groups" in src.segment(call):
            receiver = src.segment(call.func.value)
            *head, a, b = [src.segment(arg) for arg in call.args]
            swapped = f"{src.segment(call.func)}({', '.join([*head, b, a])})"
            yield _splice(src, call, swapped)
            yield _splice(src, call, f"{src.segment(call.func)}({receiver}.shape[0], groups, -1)")


OPERATOR_FUNCTIONS = {"ddof": op_ddof, "epsilon": op_epsilon, "axis": op_axis, "keepdims": op_keepdims,
                      "float32": op_float32, "in_place": op_in_place, "missing_term": op_missing_term,
                      "exponent": op_exponent, "grouping": op_grouping}


def mutants_of(exercise) -> list:
    src = Source(RIGHT[exercise])
    found, seen = [], set()
    for operator in OPERATORS:
        for site, code, line in OPERATOR_FUNCTIONS[operator](src):
            if code in seen or code == src.text:
                continue
            seen.add(code)
            labels = OPERATOR_LABELS[operator] | (src.labels[line] if line else frozenset())
            found.append(Mutant(exercise, operator, site, code, frozenset(labels)))
    return found


# --- running implementations here: probes of the checks' shapes, and the central misconceptions ------------

def _features(rng, shape, per_sample=False):
    """Features (last axis) of different scales and offsets; with per_sample, samples of different ones too."""
    c = shape[-1]
    x = rng.normal(size=shape) * np.linspace(0.5, 3.0, c) + np.linspace(-4.0, 4.0, c)
    if per_sample:
        n = shape[0]
        lead = (n,) + (1,) * (len(shape) - 1)
        x = x * np.linspace(0.2, 5.0, n).reshape(lead) + np.linspace(-3.0, 6.0, n).reshape(lead)
    return x


def probes(exercise) -> list:
    """(args, kwargs) calls of the shapes and kinds of arguments the checks use."""
    rng = np.random.default_rng(23)
    c3 = np.array([0.5, 2.0, 3.0]), np.array([-1.0, 1.0, 0.5])
    if exercise == "manual_batch_norm":
        return [((_features(rng, (16, 3)),), dict(gamma=c3[0], beta=c3[1])),
                ((_features(rng, (4, 3)),), dict(gamma=2.0, beta=-1.0)),
                ((_features(rng, (8, 3)) * 0.3,), dict(epsilon=1.0)),
                ((_features(rng, (6, 5, 5, 3)),), dict(gamma=c3[0], beta=c3[1])),
                ((_features(rng, (7, 4)),), {})]
    if exercise == "batch_norm_backward":
        def call(shape, gamma, **kwargs):
            x = _features(rng, shape) * 3.0
            return (rng.normal(size=shape) + x, x, gamma), kwargs
        return [call((32, 4), np.array([1.0, 2.0, 0.5, 3.0])), call((16, 3), 2.0), call((4, 3, 3, 2), c3[0][:2]),
                call((12, 3), c3[0], epsilon=0.5), call((8, 5), np.linspace(0.5, 1.5, 5))]
    if exercise == "update_moving_statistics":
        stats = (np.array([0.0, 0.5, -1.0]), np.array([1.0, 2.0, 0.5]), np.array([40.0, -25.0, 10.0]),
                 np.array([90.0, 16.0, 300.0]))
        return [(stats, {}), (stats, dict(momentum=0.9)), (stats, dict(momentum=0.8))]
    if exercise == "batch_norm_inference":
        mm, mv = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 9.0])
        return [((_features(rng, (10, 3)), mm, mv), dict(gamma=c3[0], beta=c3[1])),
                ((_features(rng, (4, 3, 3, 3)), mm, mv), dict(gamma=2.0, beta=1.0)),
                ((_features(rng, (6, 3)) * 0.1, mm, np.array([0.05, 0.1, 0.2])), dict(epsilon=0.1)),
                ((_features(rng, (5, 3)), mm, mv), {})]
    if exercise == "debiased_moving_statistic":
        return [((np.array([0.62, 0.63, 0.65, 0.7]), 1.0, 0.99, 47), {}),
                ((np.array([0.8, -0.3, 2.1]), np.array([0.5, 0.0, 1.0]), 0.9, 5), {}),
                ((np.array([1.5, 2.5]), 2.0, 0.8, 3), {}),
                ((np.array([[0.4, 0.9, 1.2], [0.1, 0.6, 0.3]]), np.array([1.0, 0.0, 0.5]), 0.95, 10), {})]
    if exercise == "population_statistics":
        def batches(sizes):
            b = len(sizes)
            means = rng.normal(size=(b, 3)) * np.array([1.0, 5.0, 0.5]) + np.array([0.0, 10.0, -2.0])
            variances = rng.uniform(0.5, 4.0, size=(b, 3)) * np.array([1.0, 9.0, 0.25])
            return (means, variances, np.asarray(sizes, dtype=np.int64)), {}
        return [batches([32, 32, 32, 32]), batches([64, 64, 64, 7]), batches([10, 20, 30])]
    if exercise == "group_norm":
        c6 = np.linspace(0.5, 3.0, 6), np.linspace(-1.0, 1.0, 6)
        return [((_features(rng, (4, 3, 3, 4), per_sample=True), 2), {}),
                ((_features(rng, (2, 3, 3, 6), per_sample=True), 3), dict(gamma=c6[0], beta=c6[1])),
                ((_features(rng, (3, 2, 2, 4), per_sample=True), 4), {}),
                ((_features(rng, (5, 8), per_sample=True), 4), dict(gamma=2.0, beta=-1.0)),
                ((_features(rng, (3, 2, 2, 4), per_sample=True) * 0.1, 2), dict(epsilon=0.1))]
    if exercise == "group_norm_backward":
        def call(shape, groups, gamma, **kwargs):
            x = _features(rng, shape, per_sample=True) * 3.0
            return (rng.normal(size=shape) + x / 5.0, x, groups, gamma), kwargs
        return [call((4, 3, 3, 4), 2, np.linspace(0.5, 2.0, 4), epsilon=0.0),
                call((2, 3, 3, 6), 3, np.linspace(0.5, 2.0, 6)),
                call((3, 2, 2, 4), 4, np.linspace(0.5, 2.0, 4)), call((5, 8), 4, np.linspace(0.5, 2.0, 8)),
                call((4, 3, 3, 6), 3, 2.0, epsilon=0.0), call((3, 3, 3, 4), 2, np.linspace(0.5, 2.0, 4), epsilon=0.5)]
    raise KeyError(exercise)


def _stats(x, axes):
    return x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)


def central_mistake(exercise):
    """Each exercise's central misconception (known_mistakes.CENTRAL_MISTAKES names them), written here."""
    if exercise == "manual_batch_norm":              # statistics per sample, over every axis but the first
        def f(x, gamma=1.0, beta=0.0, epsilon=1e-5):
            mean, var = _stats(x, tuple(range(1, x.ndim)))
            return gamma * (x - mean) / np.sqrt(var + epsilon) + beta
    elif exercise == "batch_norm_backward":          # the batch mean and variance treated as constants
        def f(dout, x, gamma, epsilon=1e-5):
            axes = tuple(range(x.ndim - 1))
            mean, var = _stats(x, axes)
            x_hat = (x - mean) / np.sqrt(var + epsilon)
            return dout * gamma / np.sqrt(var + epsilon), (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
    elif exercise == "update_moving_statistics":     # momentum on the batch (PyTorch's convention)
        def f(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
            return ((1 - momentum) * moving_mean + momentum * batch_mean,
                    (1 - momentum) * moving_var + momentum * batch_var)
    elif exercise == "batch_norm_inference":         # the batch's own statistics at inference
        def f(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
            mean, var = _stats(x, tuple(range(x.ndim - 1)))
            return gamma * (x - mean) / np.sqrt(var + epsilon) + beta
    elif exercise == "debiased_moving_statistic":    # Adam's bias correction alone
        def f(moving, initial, momentum, steps):
            return moving / (1 - momentum ** steps)
    elif exercise == "population_statistics":        # the batch variances averaged: no between-batch term
        def f(batch_means, batch_vars, batch_sizes):
            w = batch_sizes / batch_sizes.sum()
            return w @ batch_means, w @ batch_vars
    elif exercise == "group_norm":                   # statistics per group shared by the whole batch
        def f(x, groups, gamma=1.0, beta=0.0, epsilon=1e-3):
            g = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
            mean, var = _stats(g, tuple(a for a in range(g.ndim) if a != g.ndim - 2))
            return gamma * ((g - mean) / np.sqrt(var + epsilon)).reshape(x.shape) + beta
    elif exercise == "group_norm_backward":          # each group's mean and variance treated as constants
        def f(dout, x, groups, gamma, epsilon=1e-3):
            g = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
            mean, var = _stats(g, tuple(range(1, g.ndim - 2)) + (g.ndim - 1,))
            x_hat = ((g - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
            std = np.broadcast_to(np.sqrt(var + epsilon), g.shape).reshape(x.shape)
            sums = tuple(range(x.ndim - 1))
            return dout * gamma / std, (dout * x_hat).sum(axis=sums), dout.sum(axis=sums)
    return f


def shows_the_central_misconception(exercise, function) -> bool:
    """Whether ``function`` shows its exercise's central misconception in any form, not only in the formula
    central_mistake writes: statistics shared across the features of a sample (manual_batch_norm, the
    mean's or the variance's or both), or an output for one sample that depends on the rest of its batch
    (batch_norm_inference, group_norm). The other exercises' misconceptions have one form."""
    rng = np.random.default_rng(5)
    with np.errstate(all="ignore"):
        try:
            if exercise == "manual_batch_norm":
                x = rng.normal(size=(6, 3)) * [1.0, 4.0, 0.5] + [0.0, 3.0, -2.0]
                other = x.copy()
                other[:, 1:] = other[:, 1:] * 3.0 + 7.0         # the other features change, feature 0 does not
                return not np.allclose(function(x.copy())[:, 0], function(other)[:, 0], rtol=1e-6, atol=1e-9)
            if exercise in ("batch_norm_inference", "group_norm"):
                x = rng.normal(size=(4, 2, 2, 4)) * np.array([0.5, 1.0, 3.0, 2.0])[:, None, None, None]
                args = (np.array([0.1, -0.2, 0.3, 0.0]), np.array([1.0, 2.0, 0.5, 1.5])) \
                    if exercise == "batch_norm_inference" else (2,)
                together = function(x.copy(), *copy.deepcopy(args))[:1]     # copies: a mutant may change its
                alone = function(x[:1].copy(), *copy.deepcopy(args))         # inputs in place
                return not np.allclose(together, alone, rtol=1e-6, atol=1e-9)
        except Exception:        # noqa: BLE001 - a mutant that raises here is judged by classify's probes
            return False
    return False


def _parts(out):
    return tuple(out) if isinstance(out, tuple) else (out,)


def run(function, call):
    """(parts as arrays, dtypes, arguments after the call) of function on a copy of the probe, or the exception."""
    args, kwargs = copy.deepcopy(call)
    try:
        with np.errstate(all="ignore"):
            out = function(*args, **kwargs)
    except Exception as exc:       # noqa: BLE001 - a mutant may raise anything
        return f"raises {type(exc).__name__}: {_short(str(exc), 80)}"
    parts = _parts(out)
    return ([None if p is None else np.asarray(p) for p in parts],
            [type(p).__name__ if p is None else str(np.asarray(p).dtype) for p in parts], args)


def _same(a, b, rtol, atol) -> bool:
    return all(p is not None and q is not None and p.shape == q.shape and np.allclose(p, q, rtol=rtol, atol=atol)
               for p, q in zip(a, b, strict=True)) and len(a) == len(b)


def _no_answer(parts, want, args) -> str | None:
    """Why parts are no answer to a grader, or None: no part is one (each is None, of the wrong shape, zeros, a
    constant or an input unchanged). A tuple with one real part is an answer (its other parts are wrong)."""
    if len(parts) != len(want):
        return f"returns {len(parts)} values, not {len(want)}"
    reasons = []
    for part, right in zip(parts, want, strict=True):
        if part is None:
            reasons.append("returns None")
        elif part.shape != right.shape:
            reasons.append(f"returns shape {part.shape}, not {right.shape}")
        elif any(isinstance(a, np.ndarray) and a.shape == part.shape and np.array_equal(a, part) for a in args):
            reasons.append("returns an input unchanged")
        elif part.size and np.all(part == 0):
            reasons.append("returns zeros")
        elif part.size > 1 and np.all(part == part.flat[0]):
            reasons.append("returns a constant")
        else:
            return None
    return reasons[0]


def classify(mutant):
    """equivalent (same outputs, dtypes and untouched inputs on every probe), no_answer (no answer on every
    probe), partial (no answer on some), central (the central misconception's outputs on every probe), or
    ordinary."""
    namespace = {"np": np}
    exec(compile(mutant.code, f"<{mutant.name}>", "exec"), namespace)
    function, right, central = namespace[mutant.exercise], globals()[mutant.exercise], central_mistake(mutant.exercise)
    verdicts = {"equivalent": True, "central": True}
    failures, partly = [], []
    for call in probes(mutant.exercise):
        want, want_dtypes, _ = run(right, call)
        got = run(function, call)
        if isinstance(got, str):
            failures.append(got)
            verdicts = dict.fromkeys(verdicts, False)
            continue
        parts, dtypes, after = got
        why = _no_answer(parts, want, call[0])
        if why:
            failures.append(why)
            verdicts = dict.fromkeys(verdicts, False)
            continue
        wrong_part = next((f"part {i + 1} {'is None' if p is None else f'has shape {p.shape}'}, not {w.shape}"
                           for i, (p, w) in enumerate(zip(parts, want, strict=True))
                           if p is None or p.shape != w.shape), None)
        if wrong_part:      # no answer for that part: a grader can judge none of its properties
            partly.append(wrong_part)
        untouched = all(not isinstance(a, np.ndarray) or np.array_equal(a, b) for a, b in zip(call[0], after,
                                                                                            strict=True))
        verdicts["equivalent"] &= _same(parts, want, 1e-12, 1e-12) and dtypes == want_dtypes and untouched
        verdicts["central"] &= _same(parts, _parts(central(*call[0], **call[1])), 1e-6, 1e-9)
    n = len(probes(mutant.exercise))
    if failures:
        mutant.kind, mutant.why = ("no_answer" if len(failures) == n else "partial"), failures[0]
    elif partly:
        mutant.kind, mutant.why = "partial", partly[0]
    elif verdicts["equivalent"]:
        mutant.kind = "equivalent"
    elif verdicts["central"] or shows_the_central_misconception(mutant.exercise, function):
        mutant.kind = "central"
    else:
        mutant.kind = "ordinary"
    return mutant.kind


# --- grading: one mutant of each exercise per notebook -------------------------------------------------------

def _grade(tmp_path, codes: dict) -> list:
    cells = ["import numpy as np", *(codes.get(e, RIGHT[e]) for e in EXERCISES)]
    _, rows = check_cells(tmp_path, cells, [e for e in EXERCISES if e in codes])
    return [row.to_dict() for row in rows]


@dataclass
class Grading:
    mutants: dict              # exercise -> [Mutant]
    right_rows: list
    gradings: int
    seconds: float
    unknown_checks: dict       # exercise -> check names graded that CHECK_LABELS does not know
    missing_checks: dict       # exercise -> check names of CHECK_LABELS that were not graded

    def all(self):
        return [m for e in EXERCISES for m in self.mutants[e]]


def _check_name(row) -> str:
    return row["id"].split("::", 1)[1]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Grading:
    started = time.monotonic()
    mutants = {e: mutants_of(e) for e in EXERCISES}
    for m in (m for e in EXERCISES for m in mutants[e]):
        classify(m)
    folder = tmp_path_factory.mktemp("mutants")
    right_rows = _grade(folder, dict(RIGHT))
    graded_names = {}
    for row in right_rows:
        graded_names.setdefault(row["exercise"], set()).add(_check_name(row))
    rounds = max(len(found) for found in mutants.values())
    for i in range(rounds):
        batch = {e: mutants[e][i] for e in EXERCISES if i < len(mutants[e])}
        rows = _grade(folder, {e: m.code for e, m in batch.items()})
        for row in rows:
            m = batch[row["exercise"]]
            m.points += row["points"]
            if not row["passed"]:
                m.failing.append((_check_name(row), row["max_points"] - row["points"], row["message"]))
    result = Grading(mutants, right_rows, rounds + 1, time.monotonic() - started,
                     {e: sorted(graded_names.get(e, set()) - set(CHECK_LABELS[e])) for e in EXERCISES},
                     {e: sorted(set(CHECK_LABELS[e]) - graded_names.get(e, set())) for e in EXERCISES})
    print("\n" + summary(result))
    return result


# --- the report ----------------------------------------------------------------------------------------------

def _share(m) -> float:
    return m.points / POINTS[m.exercise]


def describe(m, extra="") -> str:
    lines = [f"- {m.exercise} / {m.operator} / {m.site} [{m.kind}{': ' + m.why if m.why else ''}]: "
             f"{m.points:g} of {POINTS[m.exercise]:g} kept; labels {{{', '.join(sorted(m.labels))}}}{extra}"]
    for name, lost, message in m.failing:
        concerns = CHECK_LABELS[m.exercise].get(name)
        tag = "not in CHECK_LABELS" if concerns is None else "{" + ", ".join(sorted(concerns)) + "}"
        lines.append(f"    {name} (-{lost:g}, {tag}): {_short(message, 150)}")
    return "\n".join(lines)


def summary(g: Grading) -> str:
    short = {"manual_batch_norm": "manual", "batch_norm_backward": "backward", "update_moving_statistics": "update",
             "batch_norm_inference": "inference", "debiased_moving_statistic": "debiased",
             "population_statistics": "population", "group_norm": "group", "group_norm_backward": "gn backward"}
    out = ["Mutation fairness: single-slip mutants of plain implementations, graded by the hidden checks", ""]
    header = "| operator | " + " | ".join(short[e] for e in EXERCISES) + " | total |"
    out += [header, "|" + " --- |" * (len(EXERCISES) + 2)]
    for op in (*OPERATORS, "(all)"):
        counts = [sum(1 for m in g.mutants[e] if op in (m.operator, "(all)")) for e in EXERCISES]
        out.append(f"| {op} | " + " | ".join(str(c) for c in counts) + f" | {sum(counts)} |")
    kinds = ("equivalent", "central", "ordinary", "partial", "no_answer")
    for kind in kinds:
        counts = [sum(1 for m in g.mutants[e] if m.kind == kind) for e in EXERCISES]
        out.append(f"| *{kind}* | " + " | ".join(str(c) for c in counts) + f" | {sum(counts)} |")
    broken = {op: ", ".join(f"({r}) {n}" for r in RULES
                            if (n := sum(RULES[r][1](m) for m in g.all() if m.operator == op)))
              for op in OPERATORS}
    out += ["", exercise_table(g), "", "Mutants breaking each rule, per operator: "
            + ("; ".join(f"{op} {text}" for op, text in broken.items() if text) or "none")]
    answers = [m for m in g.all() if m.kind in ("ordinary", "equivalent")]
    worst = min(answers, key=_share, default=None)
    out += ["", f"{len(g.all())} mutants graded in {g.gradings} gradings (one mutant of each exercise per notebook, "
                f"plus the right answers) in {g.seconds:.1f} s."]
    if worst is not None:
        out.append(f"Smallest share kept by a non-central answer: {_share(worst):.0%} "
                   f"({worst.points:g} of {POINTS[worst.exercise]:g}): {worst.name}")
    no_answers = {}
    for m in g.all():
        if m.kind in ("no_answer", "partial"):
            key = f"{m.exercise}/{m.operator} ({m.kind})"
            no_answers[key] = no_answers.get(key, 0) + 1
    if no_answers:
        out.append("No answers (raise, wrong shape, None/zeros/constant/input) per exercise and operator: "
                   + ", ".join(f"{k} x{v}" for k, v in no_answers.items()))
    for e in EXERCISES:
        out += ["", f"{e} ({POINTS[e]:g} points):"]
        for m in g.mutants[e]:
            failed = ", ".join(f"{name} -{lost:g}" for name, lost, _ in m.failing) or "all checks pass"
            out.append(f"  {m.points:5g}  {m.kind:10s} {m.operator:12s} {m.site}  [{failed}]")
    return "\n".join(out)


def _off_label(m) -> list:
    """The checks m fails that concern none of its labels."""
    return [name for name, _, _ in m.failing if not (CHECK_LABELS[m.exercise].get(name, set()) & m.labels)]


RULES = {
    "a": ("non-central mutants keep less than half of their exercise's points",
          lambda m: m.kind in ("ordinary", "equivalent") and _share(m) < 0.5),
    "b": ("float32 mutants lose points", lambda m: m.operator == "float32" and _share(m) < 1),
    "c": ("mutants fail checks about a property they do not change",
          lambda m: m.kind not in ("no_answer", "partial") and bool(_off_label(m))),
    "d": ("equivalent mutants lose points", lambda m: m.kind == "equivalent" and _share(m) < 1),
    "0": ("mutants that are no answer score points", lambda m: m.kind == "no_answer" and m.points > 0),
}


def violations(g: Grading, rule) -> list:
    return [m for m in g.all() if RULES[rule][1](m)]


def _assert_rule(g: Grading, rule) -> None:
    found = violations(g, rule)
    if found:
        extra = (lambda m: f"; checks about something else: {', '.join(_off_label(m))}") if rule == "c" \
            else (lambda m: "")
        pytest.fail(f"{len(found)} {RULES[rule][0]}:\n" + "\n".join(describe(m, extra(m)) for m in found),
                    pytrace=False)


def exercise_table(g: Grading) -> str:
    """Per exercise: mutants by kind, the smallest share a non-central answer keeps, the central mutants' shares,
    and how many mutants break each rule."""
    lines = ["| exercise | mutants | equiv. / central / ordinary / partial / no answer | min share (non-central) "
             "| central kept | (a) | (b) | (c) | (d) | no answer > 0 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in EXERCISES:
        ms = g.mutants[e]
        kinds = " / ".join(str(sum(m.kind == k for m in ms))
                           for k in ("equivalent", "central", "ordinary", "partial", "no_answer"))
        answers = [m for m in ms if m.kind in ("ordinary", "equivalent")]
        low = f"{min(map(_share, answers)):.0%}" if answers else "-"
        central = ", ".join(f"{_share(m):.0%}" for m in ms if m.kind == "central") or "-"
        counts = " | ".join(str(sum(RULES[r][1](m) for m in ms)) for r in ("a", "b", "c", "d", "0"))
        lines.append(f"| {e} | {len(ms)} | {kinds} | {low} | {central} | {counts} |")
    return "\n".join(lines)


# --- the tests ----------------------------------------------------------------------------------------------

# The tests that read the grades: about 30 sandboxed gradings, 7 to 10 s, so slow (test-fast stays under its minute).
GRADES_MUTANTS = pytest.mark.slow


def test_every_operator_finds_a_site_and_every_mutant_is_a_single_change():
    for e in EXERCISES:
        Source(RIGHT[e])                                    # parses, every line's labels read
    found = {op for e in EXERCISES for op in (m.operator for m in mutants_of(e))}
    assert found == set(OPERATORS)
    for e in EXERCISES:
        for m in mutants_of(e):
            namespace = {"np": np}
            exec(compile(m.code, m.name, "exec"), namespace)     # every mutant is still a definition
            assert callable(namespace[e]), m.name


def test_the_implementations_are_right_here_and_not_central():
    from autograder import reference
    for e in EXERCISES:
        for args, kwargs in probes(e):
            mine = _parts(globals()[e](*copy.deepcopy(args), **kwargs))
            theirs = _parts(getattr(reference, e if e != "manual_batch_norm" else "batch_norm")(*args, **kwargs))
            assert _same([np.asarray(p) for p in mine], [np.asarray(p) for p in theirs], 1e-9, 1e-9), e
            central = _parts(central_mistake(e)(*args, **kwargs))
            assert not _same([np.asarray(p) for p in mine], [np.asarray(p) for p in central], 1e-6, 1e-9), e


@GRADES_MUTANTS
def test_the_right_implementations_score_every_point(graded):
    totals = {}
    for row in graded.right_rows:
        totals[row["exercise"]] = totals.get(row["exercise"], 0.0) + row["points"]
    assert totals == POINTS, [(r["id"], r["message"][:150]) for r in graded.right_rows if not r["passed"]]


@GRADES_MUTANTS
def test_every_graded_check_has_its_labels(graded):
    wrong = [f"- {e}: graded but not in CHECK_LABELS: {graded.unknown_checks[e]}; in CHECK_LABELS but not graded: "
             f"{graded.missing_checks[e]}" for e in EXERCISES if graded.unknown_checks[e] or graded.missing_checks[e]]
    if wrong:
        pytest.fail(f"{len(wrong)} exercises whose checks differ from the label table:\n" + "\n".join(wrong),
                    pytrace=False)


@GRADES_MUTANTS
def test_a_slip_that_is_not_the_central_mistake_keeps_half_of_the_points(graded):      # (a)
    _assert_rule(graded, "a")


@GRADES_MUTANTS
def test_computing_in_float32_costs_nothing(graded):                                   # (b)
    _assert_rule(graded, "b")


@GRADES_MUTANTS
def test_every_failing_check_concerns_what_the_mutant_changed(graded):                 # (c)
    _assert_rule(graded, "c")


@GRADES_MUTANTS
def test_a_mutant_that_changes_nothing_keeps_every_point(graded):                      # (d)
    _assert_rule(graded, "d")


@GRADES_MUTANTS
def test_no_answer_scores_nothing(graded):
    _assert_rule(graded, "0")


def test_a_mutant_that_changes_its_input_in_place_is_not_taken_for_the_central_mistake():
    """shows_the_central_misconception calls twice on one input: each call gets copies, or an input changed
    by the first call would make the second output differ (batch_norm_inference's in-place mutant did)."""
    for e in EXERCISES:
        for m in (m for m in mutants_of(e) if m.operator == "in_place"):
            assert classify(m) == "ordinary", (m.name, m.kind, m.why)
