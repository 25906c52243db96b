"""Issue 16, part 4: the loose ends of intake and feedback.

* A zip whose notebook member is refused for safety (path traversal, an absolute path, a symbolic
  link) gets a row naming the member and why, not "holds no notebook".
* A parametrised check (the modern CNN's two shapes) is one line of the feedback page.
"""

import stat
import zipfile

import pytest

from autograder import feedback
from autograder.classroom import collect
from autograder.results import CheckResult, Result


def _course(tmp_path):
    archive = tmp_path / "downloaded" / "batchnorm" / "archive"
    archive.mkdir(parents=True)
    return archive


def _link_member(z, name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z.writestr(info, target)


@pytest.mark.parametrize("member, why", [
    ("../../outside/batchnorm.ipynb", "path traversal (..)"),
    ("work/../../batchnorm.ipynb", "path traversal (..)"),
    ("/home/ann/batchnorm.ipynb", "an absolute path"),
    ("C:/Users/ann/batchnorm.ipynb", "an absolute path"),
    ("batchnorm.ipynb", "a symbolic link"),
])
def test_a_refused_notebook_member_is_named_with_its_reason(tmp_path, member, why):
    archive = _course(tmp_path)
    with zipfile.ZipFile(archive / "ann.zip", "w") as z:
        if why == "a symbolic link":
            _link_member(z, member, "/etc/passwd")
        else:
            z.writestr(member, "{}")
        z.writestr("notes.txt", "my notes")
    problems = collect.collect_archives(tmp_path)
    assert problems == {"ann": f"the archive ann.zip's member {member} was refused: {why}; "
                               "re-zip the notebook itself"}
    assert "holds no notebook" not in problems["ann"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "submitted" / "ann").exists()
    (hand_in,) = collect.discover(tmp_path, problems=problems)
    assert hand_in.notebook is None and hand_in.error == problems["ann"]


def test_a_zip_in_a_zip_reports_its_refused_member_and_an_empty_zip_says_no_notebook(tmp_path):
    archive = _course(tmp_path)
    import io
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        _link_member(z, "hw/batchnorm.ipynb", "../../secret")
    with zipfile.ZipFile(archive / "bob.zip", "w") as z:
        z.writestr("submission.zip", inner.getvalue())
    with zipfile.ZipFile(archive / "cy.zip", "w") as z:
        z.writestr("readme.txt", "nothing here")
    problems = collect.collect_archives(tmp_path)
    assert problems["bob"] == ("the archive bob.zip's member hw/batchnorm.ipynb was refused: a symbolic link; "
                               "re-zip the notebook itself")
    assert problems["cy"] == "the archive cy.zip holds no notebook (.ipynb)"


def test_a_refused_member_beside_a_good_notebook_costs_nothing(tmp_path):
    archive = _course(tmp_path)
    with zipfile.ZipFile(archive / "dee.zip", "w") as z:
        z.writestr("../evil.ipynb", "{}")
        z.writestr("batchnorm.ipynb", '{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    assert collect.collect_archives(tmp_path) == {}
    assert (tmp_path / "submitted" / "dee" / "batchnorm" / "batchnorm.ipynb").is_file()


def _modern_rows(first_passed=True, second_passed=True, second_message=None):
    name = "build_modern_cnn::test_honours_input_shape_and_num_classes"
    passed = "passed: Builds for any input_shape and num_classes (checked at (28, 28, 1)/10 and (64, 64, 3)/5)."
    return [
        CheckResult("build_modern_cnn::test_uses_conv_bn_relu_blocks", "build_modern_cnn", 0.5, 0.5, True, "passed: blocks"),
        CheckResult(f"{name}[28x28x1-10]", "build_modern_cnn", 0.25 if first_passed else 0.0, 0.25, first_passed,
                    passed if first_passed else "build_modern_cnn(input_shape=(28, 28, 1), num_classes=10) has "
                                                "input shape (None, 32, 32, 3); pass input_shape to keras.Input"),
        CheckResult(f"{name}[64x64x3-5]", "build_modern_cnn", 0.25 if second_passed else 0.0, 0.25, second_passed,
                    passed if second_passed else second_message),
    ]


def _modern_section(page):
    section = page.split("Modern CNN builder")[1].split("</section>")[0]
    return section.count("<li "), section


def test_a_parametrised_check_is_one_line_of_the_feedback_page():
    page = feedback.render(Result.graded(_modern_rows()))
    lines, section = _modern_section(page)
    assert lines == 2                                        # the blocks check and the shapes check
    assert section.count("Builds for any input_shape and num_classes") == 1
    assert "0.5 / 0.5" in section


def test_a_parametrised_check_that_fails_once_shows_its_points_and_each_distinct_failure():
    fixed = ("build_modern_cnn(input_shape=(64, 64, 3), num_classes=5) has input shape (None, 32, 32, 3); "
             "pass input_shape to keras.Input")
    page = feedback.render(Result.graded(_modern_rows(first_passed=False, second_passed=False, second_message=fixed)))
    lines, section = _modern_section(page)
    assert lines == 2 and "0 / 0.5" in section
    assert "(28, 28, 1), num_classes=10)" in section and "(64, 64, 3), num_classes=5)" in section
    page = feedback.render(Result.graded(_modern_rows(second_passed=False, second_message=fixed)))
    lines, section = _modern_section(page)
    assert lines == 2 and "0.25 / 0.5" in section and "&#10007;" in section
    assert "Builds for any input_shape" not in section     # the failure is said, not the passing half
