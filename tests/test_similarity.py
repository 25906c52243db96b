"""Similarity between submissions (issue 16, part 3): copydetect on the answer cells, ranked on the
whole notebook, model builders grouped by architecture, and a page that says it is no verdict.

The class: the synthetic full-marks student (the master's solutions), a copier who handed in the
same answers with identifiers renamed, comments rewritten and independent lines reordered
(``disguise``), and independent students whose answers are differently written correct
solutions (``VARIANTS``: four per NumPy exercise, checked against the reference here), combined so
that no two share an answer except one pair, who share their two shortest answers. The copied pair
must rank first, above every pair of independent answers; sharing short answers must not flag.
No notebook is run: similarity reads code.
"""

import ast
import csv
import io
import tokenize

import numpy as np
import pytest

from autograder import known_mistakes, reference
from autograder import synthetic_students as students
from autograder.classroom import similarity, store
from autograder.notebook import released_notebook
from autograder.results import CheckResult, Result

from conftest import check_cells

VARIANTS = {
"manual_batch_norm": [
'''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    axis = tuple(range(len(x.shape) - 1))
    mu = np.mean(x, axis=axis)
    sigma2 = np.var(x, axis=axis)
    normalized = (x - mu) / np.sqrt(sigma2 + epsilon)
    return gamma * normalized + beta
''',
'''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    flat = x.reshape(-1, x.shape[-1]).astype(float)
    m = flat.shape[0]
    mean = flat.sum(axis=0) / m
    centered = x - mean
    var = (centered ** 2).reshape(-1, x.shape[-1]).sum(axis=0) / m
    return gamma * centered / (var + epsilon) ** 0.5 + beta
''',
'''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    x = np.array(x, dtype=float)
    out = np.empty_like(x)
    for c in range(x.shape[-1]):
        values = x[..., c]
        out[..., c] = (values - values.mean()) / np.sqrt(values.var() + epsilon)
    return out * gamma + beta
''',
'''def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):
    reduce_axes = tuple(i for i in range(x.ndim) if i != x.ndim - 1)
    mean = x.mean(axis=reduce_axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=reduce_axes, keepdims=True) + epsilon)
    return (x - mean) * inv_std * gamma + beta
'''],
"batch_norm_backward": [
'''def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    axes = tuple(range(x.ndim - 1))
    N = np.prod([x.shape[a] for a in axes])
    mu = x.mean(axis=axes)
    xmu = x - mu
    var = (xmu ** 2).mean(axis=axes)
    sqrtvar = np.sqrt(var + epsilon)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * gamma
    divar = (dxhat * xmu).sum(axis=axes)
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar / sqrtvar ** 2
    dvar = 0.5 * dsqrtvar / sqrtvar
    dsq = dvar * np.ones_like(x) / N
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=axes)
    dx = dx1 + dmu / N
    return dx, dgamma, dbeta
''',
'''def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    red = tuple(range(x.ndim - 1))
    n = x.size / x.shape[-1]
    std = np.sqrt(x.var(axis=red) + epsilon)
    x_norm = (x - x.mean(axis=red)) / std
    g = dout * gamma
    dx = (n * g - g.sum(axis=red) - x_norm * (g * x_norm).sum(axis=red)) / (n * std)
    return dx, (dout * x_norm).sum(axis=red), dout.sum(axis=red)
''',
'''def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    shape = x.shape
    X = x.reshape(-1, shape[-1])
    D = dout.reshape(-1, shape[-1])
    m = X.shape[0]
    mean = X.mean(0)
    var = X.var(0)
    inv = (var + epsilon) ** -0.5
    xh = (X - mean) * inv
    dgamma = np.sum(D * xh, axis=0)
    dbeta = np.sum(D, axis=0)
    dxh = D * gamma
    dvar = np.sum(dxh * (X - mean), axis=0) * -0.5 * inv ** 3
    dmean = -np.sum(dxh, axis=0) * inv + dvar * np.mean(-2.0 * (X - mean), axis=0)
    dX = dxh * inv + dvar * 2.0 * (X - mean) / m + dmean / m
    return dX.reshape(shape), dgamma, dbeta
''',
'''def batch_norm_backward(dout, x, gamma, epsilon=1e-5):
    C = x.shape[-1]
    gam = np.broadcast_to(np.asarray(gamma, dtype=float), (C,))
    dx = np.zeros(x.shape)
    dgamma = np.zeros(C)
    dbeta = np.zeros(C)
    for c in range(C):
        xc = x[..., c].ravel()
        dc = dout[..., c].ravel()
        s = np.sqrt(xc.var() + epsilon)
        xhat = (xc - xc.mean()) / s
        dbeta[c] = dc.sum()
        dgamma[c] = (dc * xhat).sum()
        dxhat = dc * gam[c]
        dx[..., c] = ((dxhat - dxhat.mean() - xhat * (dxhat * xhat).mean()) / s).reshape(x.shape[:-1])
    return dx, dgamma, dbeta
'''],
"update_moving_statistics": [
'''def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    new_mean = moving_mean * momentum + batch_mean * (1.0 - momentum)
    new_var = moving_var * momentum + batch_var * (1.0 - momentum)
    return new_mean, new_var
''',
'''def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    def ema(old, new):
        return momentum * old + (1 - momentum) * new
    return ema(moving_mean, batch_mean), ema(moving_var, batch_var)
''',
'''def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    alpha = 1.0 - momentum
    mean = moving_mean + alpha * (np.asarray(batch_mean) - moving_mean)
    var = moving_var + alpha * (np.asarray(batch_var) - moving_var)
    return mean, var
''',
'''def update_moving_statistics(moving_mean, moving_var, batch_mean, batch_var, momentum=0.99):
    stats = np.stack([np.asarray(moving_mean, float), np.asarray(moving_var, float)])
    batch = np.stack([np.asarray(batch_mean, float), np.asarray(batch_var, float)])
    updated = momentum * stats + (1 - momentum) * batch
    return updated[0], updated[1]
'''],
"batch_norm_inference": [
'''def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    x_hat = (x - moving_mean) / np.sqrt(moving_var + epsilon)
    return gamma * x_hat + beta
''',
'''def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    scale = gamma / np.sqrt(moving_var + epsilon)
    shift = beta - moving_mean * scale
    return x * scale + shift
''',
'''def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    std = (np.asarray(moving_var, dtype=np.float64) + epsilon) ** 0.5
    centered = np.subtract(x, moving_mean)
    return np.add(np.multiply(gamma, np.divide(centered, std)), beta)
''',
'''def batch_norm_inference(x, moving_mean, moving_var, gamma=1.0, beta=0.0, epsilon=1e-3):
    out = x.astype(np.float64).copy()
    out -= moving_mean
    out /= np.sqrt(moving_var + epsilon)
    out *= gamma
    out += beta
    return out
'''],
"population_statistics": [
'''def population_statistics(batch_means, batch_vars, batch_sizes):
    n = np.asarray(batch_sizes, dtype=float)
    total = n.sum()
    mean = (n[:, None] * batch_means).sum(axis=0) / total
    second_moment = (n[:, None] * (batch_vars + batch_means ** 2)).sum(axis=0) / total
    return mean, second_moment - mean ** 2
''',
'''def population_statistics(batch_means, batch_vars, batch_sizes):
    mu = np.average(batch_means, axis=0, weights=batch_sizes)
    within = np.average(batch_vars, axis=0, weights=batch_sizes)
    between = np.average((batch_means - mu) ** 2, axis=0, weights=batch_sizes)
    return mu, within + between
''',
'''def population_statistics(batch_means, batch_vars, batch_sizes):
    count, mean, m2 = 0.0, 0.0, 0.0
    for mu_b, var_b, n_b in zip(batch_means, batch_vars, batch_sizes):
        delta = mu_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + var_b * n_b + delta ** 2 * count * n_b / total
        count = total
    return mean, m2 / count
''',
'''def population_statistics(batch_means, batch_vars, batch_sizes):
    sizes = np.array(batch_sizes, dtype=np.float64).reshape(-1, 1)
    weights = np.broadcast_to(sizes / sizes.sum(), batch_means.shape)
    grand_mean = np.einsum("bc,bc->c", weights, batch_means)
    spread = batch_vars + np.square(batch_means - grand_mean)
    return grand_mean, np.einsum("bc,bc->c", weights, spread)
'''],
}


SYNONYMS = ["acc", "tmp", "val", "res", "buf", "q", "z", "w", "u", "t", "h", "k", "aux", "cur", "part"]


def _local_names(func: ast.FunctionDef) -> list:
    params = {a.arg for a in func.args.args}
    names = []
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in params:
            if node.id not in names:
                names.append(node.id)
    return names


def _names_of(stmt, ctx):
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _reorder(code: str) -> str:
    """Swap adjacent one-line statements of the function body whose order does not matter."""
    tree = ast.parse(code)
    func = tree.body[0]
    lines = code.splitlines(keepends=True)
    body = [s for s in func.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    i = 0
    while i + 1 < len(body):
        a, b = body[i], body[i + 1]
        one_line = a.lineno == a.end_lineno and b.lineno == b.end_lineno and b.lineno == a.lineno + 1
        independent = not (_names_of(a, ast.Store) & (_names_of(b, ast.Load) | _names_of(b, ast.Store))
                           or _names_of(b, ast.Store) & _names_of(a, ast.Load))
        if one_line and independent and not isinstance(b, ast.Return):
            lines[a.lineno - 1], lines[b.lineno - 1] = lines[b.lineno - 1], lines[a.lineno - 1]
            i += 2
        else:
            i += 1
    return "".join(lines)


def disguise(code: str, salt: int = 0) -> str:
    """``code`` (one function) with its local names renamed, its comments rewritten and its
    independent lines reordered: what a student who copied it and tried to hide it hands in."""
    func = ast.parse(code).body[0]
    renames = {name: f"{SYNONYMS[(i + salt) % len(SYNONYMS)]}_{i}" for i, name in enumerate(_local_names(func))}
    where = {(n.lineno, n.col_offset) for n in ast.walk(func) if isinstance(n, ast.Name) and n.id in renames}
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.start in where:
            tok = tok._replace(string=renames[tok.string])
        elif tok.type == tokenize.COMMENT:
            tok = tok._replace(string="# my own working, see notes")
        out.append(tok)
    return _reorder(tokenize.untokenize(out))


SHORT = ("update_moving_statistics", "batch_norm_inference")     # the shortest answers
EXERCISES = tuple(VARIANTS)
CODE = tuple(e.id for e in similarity.CODE_EXERCISES)           # every exercise compared as code


def release_stubs() -> dict:
    """{grade_id: source} of the released notebook's solution cells (what an unanswered one holds)."""
    import nbformat
    release = nbformat.read(released_notebook(), as_version=4)
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in release.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


MODEL_CELLS = {e.solution_cell for e in similarity.MODEL_EXERCISES}


def independent(answers: dict) -> dict:
    """An independent student's answers: ``answers``, and the stub (unanswered) for every other solution
    cell but the model builders', so that no two independent students share an answer this test did
    not plan (the master's solutions, which synthetic_students.py fills in, are one shared answer)."""
    stubs = release_stubs()
    return {**{g: stub for g, stub in stubs.items() if g not in answers and g not in MODEL_CELLS}, **answers}


def run_variant(exercise, code):
    namespace = {"np": np}
    exec(compile(code, f"<{exercise}>", "exec"), namespace)  # noqa: S102 - this test's own code
    return namespace[exercise]


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_variant_is_a_correct_answer(exercise):
    rng = np.random.default_rng(7)
    for code in VARIANTS[exercise]:
        f = run_variant(exercise, code)
        for shape in ((16, 3), (4, 3, 3, 2)):
            x = rng.normal(size=shape) * 3 + 2
            c = shape[-1]
            g, b = rng.normal(size=c), rng.normal(size=c)
            if exercise == "manual_batch_norm":
                assert known_mistakes.close(f(x.copy(), g, b, 1e-5), reference.batch_norm(x, g, b, 1e-5))
            elif exercise == "batch_norm_backward":
                d = rng.normal(size=shape)
                assert known_mistakes.close(f(d, x, g, 1e-5), reference.batch_norm_backward(d, x, g, 1e-5))
                assert known_mistakes.close(f(d, x, 2.0), reference.batch_norm_backward(d, x, 2.0))
            elif exercise == "update_moving_statistics":
                stats = [rng.normal(size=c) for _ in range(4)]
                assert known_mistakes.close(f(*stats, 0.9), reference.update_moving_statistics(*stats, 0.9))
            elif exercise == "batch_norm_inference":
                m, v = rng.normal(size=c), rng.random(c)
                assert known_mistakes.close(f(x, m, v, g, b, 1e-3), reference.batch_norm_inference(x, m, v, g, b, 1e-3))
            else:
                bm, bv, bs = rng.normal(size=(4, c)), rng.random((4, c)), np.array([64, 64, 64, 7])
                assert known_mistakes.close(f(bm, bv, bs), reference.population_statistics(bm, bv, bs))


def test_the_disguise_changes_the_text_but_not_the_computation():
    solution = students.solution_code()

    def body(code):
        return [line.strip() for line in code.split('"""')[-1].splitlines() if line.strip()]

    for exercise in EXERCISES:
        original, copied = solution[exercise], disguise(solution[exercise])
        assert copied != original
        assert sorted(body(copied)) != sorted(body(original))             # renamed, not only moved
        x = np.random.default_rng(1).normal(size=(8, 3))
        if exercise == "manual_batch_norm":
            assert known_mistakes.close(run_variant(exercise, copied)(x), run_variant(exercise, original)(x))
    copied = disguise(solution["manual_batch_norm"])
    assert "# my own working" in copied and "mean = " not in copied
    lines = solution["manual_batch_norm"].split('"""')[-1].splitlines()
    assert [line for line in copied.split('"""')[-1].splitlines()] != [line for line in lines]


def hand_in(course, name, answers=None, unanswered=False):
    student = students.Student(name, name, answers or {}, unanswered=unanswered)
    return students.write_submission(student, course / "submitted" / name / "batchnorm" / "batchnorm.ipynb")


def make_class(course):
    """The class of the module's docstring; returns the copied pair and the short-sharing pair."""
    solution = students.solution_code()
    hand_in(course, "full_marks")
    hand_in(course, "copier", {e: disguise(solution[e], salt=3) for e in CODE})
    latin = {j: {e: VARIANTS[e][(j + i) % 4] for i, e in enumerate(EXERCISES)} for j in range(4)}
    latin[1].update({e: latin[0][e] for e in SHORT})      # the one pair that shares answers: the short ones
    for j, answers in latin.items():                       # otherwise a Latin square: no two share an answer
        hand_in(course, f"independent{j}", independent(answers))
    hand_in(course, "unanswered", unanswered=True)
    return {"copier", "full_marks"}, {"independent0", "independent1"}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    copied, short = make_class(course)
    html, csv_path, found = similarity.write_similarity(course)
    return course, copied, short, html, csv_path, found


@pytest.mark.slow
def test_the_copied_pair_ranks_first_above_every_independent_pair(compared):
    _, copied, short, _, csv_path, found = compared
    rows = read_csv(csv_path)
    assert list(rows[0]) == list(similarity.CSV_COLUMNS)
    notebook = [r for r in rows if r["exercise"] == "notebook"]
    assert {notebook[0]["student_a"], notebook[0]["student_b"]} == copied
    top = float(notebook[0]["score"])
    assert top >= similarity.FLAG
    for r in notebook[1:]:
        assert float(r["score"]) < top and float(r["score"]) < similarity.FLAG, r
    evidence = {r["exercise"]: float(r["score"]) for r in rows[1:len(CODE) + 1]}
    assert set(evidence) == set(CODE)                        # per-exercise scores beside the notebook's
    assert sum(s >= 0.6 for s in evidence.values()) >= 4


def test_sharing_the_short_answers_alone_does_not_flag_a_pair(compared):
    _, _, short, _, csv_path, _ = compared
    rows = read_csv(csv_path)
    pair = [r for r in rows if {r["student_a"], r["student_b"]} == short]
    scores = {r["exercise"]: float(r["score"]) for r in pair}
    assert all(scores[e] >= 0.9 for e in SHORT), scores      # identical short answers ...
    assert scores["notebook"] < similarity.FLAG, scores      # ... are not enough on their own


def test_the_released_stubs_are_boilerplate(compared):
    _, _, _, _, csv_path, found = compared
    assert found.missing == {"unanswered": "no answer beyond the released stubs"}
    assert all("unanswered" not in (r["student_a"], r["student_b"]) for r in read_csv(csv_path))
    stub = similarity.released_code()
    prints = similarity.boilerplate_hashes(stub)
    solution = students.solution_code()["manual_batch_norm"]
    alone = similarity._fingerprint("a.py", solution, None).hashes
    kept = similarity._fingerprint("a.py", solution, prints).hashes
    assert kept and len(kept) < len(alone)                  # the def line and docstring are not counted


def test_the_page_says_it_is_evidence_not_a_verdict(compared):
    _, copied, _, html, _, _ = compared
    page = html.read_text(encoding="utf-8")
    assert "Similarity is evidence for a human to read, not a verdict." in page
    assert "<mark>" in page                                  # the copied pair, side by side
    assert "identical architecture is expected" in page


@pytest.mark.slow
def test_past_terms_are_references_compared_with_every_student(tmp_path):
    course = tmp_path / "course"
    solution = students.solution_code()
    hand_in(course, "late_copier", {e: disguise(solution[e], salt=5) for e in CODE})
    for j in range(3):
        hand_in(course, f"independent{j}", independent({e: VARIANTS[e][(j + i) % 4] for i, e in enumerate(EXERCISES)}))
    past = tmp_path / "past"
    for name in ("2023/ann", "2023/bob"):                   # last year's: one of them is the solution
        path = past / name / "batchnorm.ipynb"
        if name.endswith("ann"):
            students.write_submission(students.STUDENTS["full_marks"], path)
        else:
            students.write_submission(students.Student("b", "b", independent(
                {"manual_batch_norm": VARIANTS["manual_batch_norm"][3]})), path)
    _, csv_path, found = similarity.write_similarity(course, references=past)
    rows = [r for r in read_csv(csv_path) if r["exercise"] == "notebook"]
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"late_copier", "reference:2023/ann/batchnorm.ipynb"}
    assert found.references == ["reference:2023/ann/batchnorm.ipynb", "reference:2023/bob/batchnorm.ipynb"]
    assert not any(r["student_a"].startswith("reference:") and r["student_b"].startswith("reference:") for r in rows)
    from autograder.__main__ import main
    assert main(["similarity", "batchnorm", "--course-dir", str(course), "--reference", str(past)]) == 0
    assert main(["similarity", "batchnorm", "--course-dir", str(course), "--reference", str(tmp_path / "no")]) == 2


@pytest.mark.slow
def test_model_builders_are_grouped_by_architecture_instead_of_flagged(tmp_path):
    course = tmp_path / "course"
    for name in ("ann", "bob", "cy", "dee"):
        hand_in(course, name)
    architectures = {"ann": "a" * 64, "bob": "a" * 64, "cy": "a" * 64, "dee": "b" * 64}
    for name, fingerprint in architectures.items():
        result = Result.graded([CheckResult("build_model_with_bn::t", "build_model_with_bn", 2.0, 2.0, True, "")])
        result.architectures = {"build_model_with_bn": fingerprint, "build_modern_cnn": "c" * 64}
        path = store.result_path(course, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json(), encoding="utf-8")
    html, csv_path, found = similarity.write_similarity(course)
    assert found.model_groups["build_model_with_bn"] == [("a" * 64, ["ann", "bob", "cy"]), ("b" * 64, ["dee"])]
    assert found.model_groups["build_modern_cnn"] == [("c" * 64, ["ann", "bob", "cy", "dee"])]
    page = html.read_text(encoding="utf-8")
    assert 'data-exercise="build_model_with_bn"' in page and "aaaaaaaaaaaa" in page
    assert {r["exercise"] for r in read_csv(csv_path)} <= {"notebook", *CODE}         # no model rows


def test_student_markup_stays_text_in_every_output(tmp_path):
    course = tmp_path / "course"
    solution = students.solution_code()
    for name in ("<b onmouseover=alert(1)>x", "=cmd|calc"):
        hand_in(course, name, {"manual_batch_norm": solution["manual_batch_norm"]
                                                    + "\n# </pre><script>alert(1)</script>\n"})
    html, csv_path, _ = similarity.write_similarity(course)
    page = html.read_text(encoding="utf-8")
    assert "<b onmouseover" not in page and "&lt;b onmouseover=alert(1)&gt;x" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    text = csv_path.read_text(encoding="utf-8")
    assert "'=cmd|calc" in text and "\n=cmd" not in text and ",=cmd" not in text


@pytest.mark.slow
def test_architectures_are_recorded_by_the_grader(tmp_path):
    """The model checks record each builder's architecture fingerprint (results.json "architectures")."""
    solution = students.solution_code()
    run, rows = check_cells(tmp_path, ["import numpy as np\nimport keras", solution["build_model_with_bn"]],
                            ["build_model_with_bn"])
    assert run.findings.fault is None, run.findings.fault
    assert all(r.passed for r in rows), [r.message for r in rows]
    assert list(run.findings.architectures) == ["build_model_with_bn"]
    assert len(run.findings.architectures["build_model_with_bn"]) == 64


def test_the_fast_score_is_copydetects_compare_files():
    """similarity.score (numpy over copydetect's fingerprints) equals compare_files' mean similarity."""
    solution = students.solution_code()
    boilerplate = similarity.boilerplate_hashes(similarity.released_code())
    codes = [solution["manual_batch_norm"], disguise(solution["manual_batch_norm"]), *VARIANTS["manual_batch_norm"],
             solution["batch_norm_backward"], disguise(solution["batch_norm_backward"], salt=2),
             *VARIANTS["batch_norm_backward"], "\n\n".join(VARIANTS[e][1] for e in EXERCISES),
             "\n\n".join(VARIANTS[e][1] for e in reversed(EXERCISES))]
    prints = [similarity._fingerprint(f"{i}.py", code, boilerplate) for i, code in enumerate(codes)]
    compared = 0
    for i, a in enumerate(prints):
        for b in prints[i + 1:]:
            assert similarity.score(a, b) == pytest.approx(similarity.compare(a, b)[0], abs=1e-12)
            compared += similarity.score(a, b) > 0
    assert compared >= 10
