"""The release never hands out a graded NumPy function's closed form: the student derives it.

For each NumPy exercise, CLOSED_FORMS lists regular expressions of its closed form on *normalized* text
(normalize() below: whitespace, ``np.``/``numpy.``, ``**``/``^``/superscripts, ``·``/``×``/``\\cdot``,
unicode minus, ``np.asarray(name, ...)`` and LaTeX markup folded into one spelling). Each pattern must match
the master's solution of that exercise (so it is a real closed form and the test can fail), and none may
match any cell of the committed release (markdown, code, docstrings, visible tests, demonstrations).

Exercise 7 states the moving averages' recursion (in its own notation, m_t and b_t) because the student
unrolls it; the Exercise 5 pattern is the update written with that exercise's argument names.
"""

import json
import re

import pytest

from autograder import assign
from autograder.exercises import EXERCISES, Kind

# {function: [pattern, ...]}: the closed forms, one home. Patterns apply to normalize()d text.
CLOSED_FORMS = {
    # the reduction axes for any rank: every axis but the features
    "manual_batch_norm": [r"range\((\w+\.ndim|len\([\w.]+\))-1\)"],
    # the variance path's staged gradients (the instructions' LaTeX: tests/test_notebooks.py)
    "batch_norm_backward": [r"\*2\*\w+/m\b", r"/\(2\*s\)"],
    # Keras' update, with Exercise 5's names: momentum weighs the old value
    "update_moving_statistics": [r"momentum\*\(?\w*moving\w*\)?\+\(1-momentum\)\*\(?\w*batch"],
    # normalizing with the moving statistics
    "batch_norm_inference": [r"\(x-(moving_mean|\\mu_moving)\)/\(?sqrt\((moving_var|\\sigma\^2_moving)\+\\?epsilon\)",
                             r"sqrt\(moving_var\+\\?epsilon\)"],
    # what is left of the start (momentum to the number of updates) and the renormalization
    "debiased_moving_statistic": [r"(momentum|0\.\d+|\\beta_1|beta1)\^\(?(steps?|t|T)(\b|_)",
                                  r"\(\w+-\w+\*initial\)/\(1-\w+\)"],
    # the law of total variance's between-batch term
    "population_statistics": [r"\((\w*means?|\\mu_b|mu_b)-(mean|\\mu|mu)\)\^2"],
    # the groups' own axis, and the statistics' axes around it
    "group_norm": [r"reshape\(\*\w+\.shape\[:-1\],groups,\w+//groups\)", r"range\(1,\w+\.ndim-2\)"],
    # its variance path's staged gradients, and the axes of one sample's group in the grouped view
    "group_norm_backward": [r"\*2\*\w+/m\b", r"/\(2\*s\)", r"range\(1,len\(\w+\)-2\)"],
}

SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻ᵗᵀⁿᵐ", "0123456789-tTnm")


def normalize(text: str) -> str:
    """One spelling for the ways a formula is written in code, docstrings and LaTeX."""
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻ᵗᵀⁿᵐ]+", lambda m: "^(" + m.group(0).translate(SUPERSCRIPTS) + ")", text)
    text = text.replace("−", "-").replace("·", "*").replace("×", "*").replace("**", "^")
    text = re.sub(r"\\(cdot|times)\b", "*", text)
    text = re.sub(r"\\(text|mathrm|operatorname)\{([^{}]*)\}", r"\2", text)
    text = re.sub(r"\\[,;:! ]|\\q?quad\b|\\left\b|\\right\b|\\[Bb]ig{1,2}[lr]?\b", "", text)
    text = re.sub(r"\b(np|numpy)\.", "", text)
    text = re.sub(r"\s+", "", text)
    text = re.sub(r"\basarray\((\w+)(,dtype=\w+)?\)", r"\1", text)
    text = re.sub(r"_\{(\w+)\}", r"_\1", text)
    for _ in range(3):      # nested braces, innermost first
        text = re.sub(r"\^\{([^{}]*)\}", r"^(\1)", text)
        text = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", text)
        text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\^\((\w+)\)", r"^\1", text)     # momentum^(T) -> momentum^T; momentum^(steps-1) stays
    return text


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _grade_id(cell):
    return cell["metadata"].get("nbgrader", {}).get("grade_id", "")


def _solutions():
    """{function: the code between the markers of its solution cell in source/}."""
    solutions = {}
    for cell in _cells(assign.REPO_ROOT / assign.SOURCE):
        source = "".join(cell["source"])
        if "### BEGIN SOLUTION" in source:
            solutions[_grade_id(cell)] = source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
    return solutions


NUMPY_FUNCTIONS = sorted({e.function for e in EXERCISES if e.kind is Kind.NUMPY})


def test_every_numpy_exercise_has_its_closed_forms():
    assert sorted(CLOSED_FORMS) == NUMPY_FUNCTIONS


@pytest.mark.parametrize("function", NUMPY_FUNCTIONS)
def test_each_pattern_is_a_closed_form_of_the_solution(function):
    solution = normalize(_solutions()[function])
    for pattern in CLOSED_FORMS.get(function, []):
        assert re.search(pattern, solution), f"{function}: {pattern!r} does not match the master's solution"


@pytest.mark.parametrize("function", NUMPY_FUNCTIONS)
def test_the_release_does_not_give_the_closed_form_away(function):
    for cell in _cells(assign.REPO_ROOT / assign.RELEASE):
        text = normalize("".join(cell["source"]))
        for pattern in CLOSED_FORMS.get(function, []):
            found = re.search(pattern, text)
            assert not found, (f"the release's cell {_grade_id(cell) or cell.get('id')} gives {function}'s closed "
                               f"form away: {found.group(0)!r} matches {pattern!r}")


@pytest.mark.parametrize("written, normalized", [
    ("new = momentum * np.asarray(moving, dtype=np.float64)", "new=momentum*moving"),
    ("numpy.sqrt(var + eps)", "sqrt(var+eps)"),
    ("momentum ** steps", "momentum^steps"),
    ("0.99ᵀ · 1.0", "0.99^T*1.0"),
    ("1 − 0.99⁴⁷", "1-0.99^47"),
    (r"$\text{momentum}^{T}\cdot\text{initial}$", "$momentum^T*initial$"),
    (r"\frac{x - \mu_{\text{moving}}}{\sqrt{\sigma^2_{\text{moving}} + \epsilon}}",
     r"(x-\mu_moving)/(sqrt(\sigma^2_moving+\epsilon))"),
    (r"(\mu_b - \mu)^2", r"(\mu_b-\mu)^2"),
])
def test_normalize_folds_the_spellings_of_a_formula(written, normalized):
    assert normalize(written) == normalized
