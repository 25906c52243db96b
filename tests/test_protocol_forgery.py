"""Lies told to the grader: return values that pretend, monkeypatched modules, forged protocol lines."""


import numpy as np
import pytest

from autograder.channel import Kind
from autograder.submission import StudentCodeError, Submission

from conftest import CHANNEL_TOOLS, MANUAL_BN, SETUP, checks, needs_bwrap, scores, write_notebook

# every cgroup a worker made is gone when the test ends
pytestmark = pytest.mark.usefixtures("cgroups")

# --- lying results -------------------------------------------------------------------------------

LIARS = '''\
import time
import numpy

class AlwaysEqual:
    def __eq__(self, other):
        return True
    __hash__ = None

class Sneaky(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.shape(other), bool)

class Pretender:                       # claims to be an ndarray of floats
    __class__ = property(lambda self: np.ndarray)
    dtype = np.dtype("float64")
    shape = (2, 2)
    def __array__(self, dtype=None, copy=None):
        return np.zeros((2, 2), dtype=np.int32)

class Patcher:                         # its conversion monkeypatches NumPy in the worker
    def __array__(self, dtype=None, copy=None):
        numpy.allclose = numpy.array_equal = lambda *a, **k: True
        numpy.isfinite = lambda a: numpy.ones(numpy.shape(a), bool)
        return numpy.zeros(3)

class Stalls:
    def __array__(self, dtype=None, copy=None):
        time.sleep(10**6)

class Model:
    def __init__(self, text):
        self.text = text
    def to_json(self):
        return self.text

def always_equal(x): return AlwaysEqual()
def int_subclass(x): return np.zeros(np.shape(x), dtype=np.int64).view(Sneaky)
def pretender(x): return Pretender()
def patcher(x): return Patcher()
def stalls(x): return Stalls()
def not_a_number(x): return np.full(np.shape(x), np.nan)
def infinite(x): return np.full(np.shape(x), -np.inf)
def too_many(x): return np.zeros(10**8)
def broadcast(x): return np.broadcast_to(np.float64(1.0), (10**6, 10**6))
def grows_its_input(x):
    x.resize(10**7, refcheck=False)
    return np.zeros(3)
def deep_json(): return Model("[" * 100000 + "]" * 100000)
def list_json(): return Model("[1, 2]")
def after_patching(x): return np.asarray(x) * 2
'''


@pytest.mark.slow
@needs_bwrap
def test_lying_return_values_decode_to_plain_numbers(tmp_path, limits):
    limits_ = limits(cell=10, call=3, grace=2)
    x = np.arange(6.0).reshape(3, 2)
    with Submission.open(write_notebook(tmp_path, SETUP, LIARS), limits_) as s:
        assert not s.cell_errors()

        def refused(function, kind, *args, **kwargs):
            with pytest.raises(StudentCodeError) as raised:
                s.call_array(function, *args, **kwargs)
            assert raised.value.kind == kind, (function, raised.value.kind, str(raised.value))
            return str(raised.value)

        assert "not 'AlwaysEqual'" in refused("always_equal", "bad_return", x)
        sneaky = s.call_array("int_subclass", x)
        assert type(sneaky.value) is np.ndarray and sneaky.value.dtype == np.float64
        assert sneaky.dtype == "int64" and np.array_equal(sneaky.value, np.zeros((3, 2)))
        pretend = s.call_array("pretender", x)
        assert pretend.dtype == "Pretender" and np.array_equal(pretend.value, np.zeros((2, 2)))
        patched = s.call_array("patcher", x)
        assert np.array_equal(patched.value, np.zeros(3))
        assert np.array_equal(s.call_array("after_patching", x).value, x * 2)
        assert "time limit" in refused("stalls", "bad_return", x)
        assert np.isnan(s.call_array("not_a_number", x).value).all()
        assert np.isneginf(s.call_array("infinite", x).value).all()
        assert "more than the 300,000 allowed" in refused("too_many", "bad_return", x)
        assert "more than the 300,000 allowed" in refused("broadcast", "bad_return", x)
        assert "arguments unusable" in refused("grows_its_input", "bad_return", x)
        for function in ("deep_json", "list_json"):
            with pytest.raises(StudentCodeError, match="did not return a usable Keras model"):
                s.model_config(function)
        # the grader's own NumPy was never touched
        assert not np.allclose(np.zeros(2), np.ones(2))


@needs_bwrap
def test_patched_or_faked_modules_forge_no_point(tmp_path, limits, graded):
    limits(cell=5, call=20)
    honest = "def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):\n    return np.zeros_like(x)\n"
    hostile_setup = '''\
import builtins, sys, types
import numpy
for name in ("autograder", "autograder.checks", "autograder.reference", "pytest", "_pytest"):
    fake = types.ModuleType(name)
    fake.__path__ = []
    fake.approx = lambda *a, **k: 0
    fake.batch_norm = lambda x, *a, **k: numpy.zeros_like(x)
    sys.modules[name] = fake
numpy.allclose = numpy.array_equal = numpy.isclose = lambda *a, **k: True
numpy.isfinite = lambda a: numpy.ones(numpy.shape(a), bool)
numpy.testing.assert_allclose = lambda *a, **k: None
builtins.all = builtins.any = lambda *a, **k: True
builtins.abs = lambda v: 0
class Sneaky(numpy.ndarray):
    def __eq__(self, other):
        return numpy.ones(numpy.shape(other), bool)
    __hash__ = None
'''
    lying = ("def manual_batch_norm(x, gamma=1.0, beta=0.0, epsilon=1e-5):\n"
             "    return numpy.zeros_like(x).view(Sneaky)\n")
    honest_results, _ = graded(write_notebook(tmp_path / "honest", SETUP, honest))
    lying_results, _ = graded(write_notebook(tmp_path / "lying", SETUP, hostile_setup, lying))
    assert honest_results["status"] == lying_results["status"] == "graded"
    assert [c["passed"] for c in checks(lying_results)] == [c["passed"] for c in checks(honest_results)]
    assert scores(lying_results) == scores(honest_results)
    assert scores(lying_results)["manual_batch_norm"] <= 0.5


# --- forged answers on the protocol channel -------------------------------------------------------------

FORGER = CHANNEL_TOOLS + '''
def _answer(request_id, number):
    value = {"ndarray": "AAAAAAAARUA=", "shape": [1], "dtype": "float64"}    # [42.0]
    return json.dumps({"id": request_id, "kind": "done", "value": value, "args_after": [None]}) + "\\n"

def echo(x):
    return x

def forges_its_own_answer(x):
    _say(_answer(_request_id(), 42))
    return x

def forges_the_next_answers(x):
    me = _request_id()
    _say("".join(_answer(me + k, 42) for k in range(1, 6)))
    return x

def writes_garbage(x):
    _say("not json\\n" + "[" * 100000 + "\\n" + json.dumps({"id": "x"}) + "\\n\\xff\\xfe\\n{}\\n")
    _say(_answer(_request_id() - 1, 42))          # a stale id
    return x

def floods(x):
    chunk = "x" * (1 << 20)
    for _ in range(200):
        _say(chunk)
    return x

def closes_the_channel(x):
    for fd in _channels():
        os.close(fd)
    return x
'''


@pytest.mark.slow
@needs_bwrap
def test_forged_protocol_lines_are_never_taken_for_another_answer(tmp_path, limits):
    limits_ = limits(cell=3, call=5, grace=2)
    forged_at_top_level = "_say(_answer(1, 42) + _answer(2, 42) + 'garbage\\n' + _answer(1000, 42))\n"
    cut_line = "_say('{\"id\": ')\n"      # no newline: the worker's own answer starts on a line of its own
    forged_cell_answer = "_say('{\"id\": %d, \"ok\": true}\\n' % _request_id())\n"   # not well formed: a failed cell
    x = np.array([1.0, 2.0, 3.0])
    path = write_notebook(tmp_path, SETUP, FORGER, forged_at_top_level, MANUAL_BN, cut_line, forged_cell_answer)
    with Submission.open(path, limits_) as s:
        errors = {o.index: o.outcome for o in s.cell_errors()}
        assert set(errors) == {5} and errors[5].kind is Kind.MALFORMED, errors
        assert "wrote to the grader's channel" in errors[5].text
        assert np.array_equal(s.call_array("echo", x).value, x)
        # its own request: it can only say what it could have returned anyway
        assert s.call_array("forges_its_own_answer", x).value.tolist() == [42.0]
        assert np.array_equal(s.call_array("echo", x).value, x)
        assert np.array_equal(s.call_array("forges_the_next_answers", x).value, x)
        assert np.array_equal(s.call_array("echo", x + 1).value, x + 1)
        assert np.array_equal(s.call_array("writes_garbage", x).value, x)
        assert np.array_equal(s.call_array("manual_batch_norm", x[:, None]).value[:, 0],
                              (x - x.mean()) / np.sqrt(x.var() + 1e-5))
        assert np.array_equal(s.call_array("floods", x).value, x)       # 200 MB that answer nothing: skipped
        with pytest.raises(StudentCodeError, match="calling closes_the_channel"):
            s.call_array("closes_the_channel", x)
        assert np.array_equal(s.call_array("echo", x).value, x)     # a fresh worker answers again
