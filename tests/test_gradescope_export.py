"""``export gradescope``: the zip Gradescope builds the autograder's image from (platforms/gradescope_export.py).

Fast: the pieces (the zip's modes and order, setup.sh's syntax and values, run_autograder's one command,
gradescope.json's round trip, the pinned requirements). Slow: the real zip (pip builds the grader's
wheel, ~4 s each), twice for its bytes, and setup.sh run as a trial in a temporary root: no apt, a venv
that sees this environment's packages (no network here), the grader's wheel installed into it, the
dataset checked and the training baseline computed into the cache.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from autograder import data, settings, trainingcache
from autograder.platforms import gradescope_export as export
from autograder.platforms.gradescope import CONFIG_NAME, GradescopeOptions
from autograder.sandbox import identity

from conftest import FULL_MARKS, MANUAL_BN, SETUP, write_notebook

REPO = Path(__file__).resolve().parent.parent
GRADING = replace(settings.Settings(), cache_dir=Path(export.CACHE_DIR))


def _mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0o7777


# --- fast: the pieces --------------------------------------------------------------------------------

def test_zip_entries_are_sorted_timeless_with_their_modes_and_the_same_bytes_each_time():
    files = {"setup.sh": (b"#!/usr/bin/env bash\n", 0o755), "b.txt": (b"b" * 1000, 0o644),
             "data/x.gz": (b"\x1f\x8b...", 0o644)}
    first = export.zip_bytes(files)
    assert export.zip_bytes(dict(reversed(list(files.items())))) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["b.txt", "data/x.gz", "setup.sh"]
        assert {i.filename: _mode(i) for i in infos} == {"b.txt": 0o644, "data/x.gz": 0o644, "setup.sh": 0o755}
        assert {i.date_time for i in infos} == {export.ZIP_TIME}
        assert [i.compress_type for i in infos] == [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]
        assert archive.read("b.txt") == b"b" * 1000


def test_run_autograder_is_one_command_running_the_venvs_grader():
    lines = export.run_autograder_script().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1:] == [f"exec {export.INSTALL_PREFIX}/bin/python -I -m autograder gradescope-run --root /autograder"]


def test_run_autograder_imports_nothing_from_the_folder_it_runs_in(tmp_path):
    # Gradescope runs it in /autograder: `python -m` alone put that folder first on the grader's path
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "__init__.py").write_text("raise SystemExit('planted package imported')")
    command = export.run_autograder_script(str(Path(sys.executable).parent.parent)).splitlines()[1].split()
    command = command[1:command.index("autograder") + 1] + ["--help"]          # not exec, not a grading run
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "planted" not in done.stdout + done.stderr, done.stderr


def test_setup_sh_is_valid_bash_with_every_value_filled_in(tmp_path):
    script = export.setup_script("batchnorm_assignment-1.0.0-py3-none-any.whl", GRADING)
    assert not re.search(r"@[A-Z_]+@", script)
    (tmp_path / "setup.sh").write_text(script)
    done = subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f'PYTHON_VERSION="{sys.version_info.major}.{sys.version_info.minor}"' in script
    assert f'mkdir -p "{identity.DEFAULT_LOCK_DIR}"' in script and f"chmod 0700 \"{identity.DEFAULT_LOCK_DIR}\"" \
        in script
    assert f"first={GRADING.limits.uid_first} -v count={GRADING.limits.uid_count}" in script
    assert '"$SOURCE/batchnorm_assignment-1.0.0-py3-none-any.whl"' in script
    assert "apt-get install -y --no-install-recommends bubblewrap" in script
    assert "apt-get install -y --no-install-recommends dataset-fashion-mnist" in script
    assert f'--config "$SOURCE/{CONFIG_NAME}"' in script


def test_gradescope_json_round_trips_through_the_options_and_the_settings():
    options = GradescopeOptions(hidden_visibility="hidden", counterpart_visibility="after_published",
                                leaderboard=True)
    grading = replace(GRADING, allow_unsandboxed=True,
                      limits=replace(GRADING.limits, memory_bytes=3 << 30, total_seconds=500.0))
    doc = json.loads(export.config_document(options, grading))
    assert set(doc) == {"options", "settings"}
    assert GradescopeOptions.from_dict(doc["options"]) == options
    assert settings.Settings.from_dict(doc["settings"]) == grading
    assert doc["settings"]["cache_dir"] == "/autograder/cache"


def test_the_requirements_are_the_graders_closure_pinned_to_the_installed_versions():
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = export.pinned_requirements(requires)
    assert all(line.count("==") == 1 for line in pins)
    versions = dict(line.split("==") for line in pins)
    assert list(versions) == sorted(versions)
    for name, version in versions.items():
        assert metadata.version(name) == version, name
    # the direct dependencies with this platform's TensorFlow, and what they need (Keras' own)
    assert versions["tensorflow-cpu"] == "2.21.0" and "tensorflow" not in versions
    assert {"keras", "numpy", "jax", "jaxlib", "nbgrader", "pytest", "copydetect"} <= set(versions)
    assert {"absl-py", "h5py", "ml-dtypes"} <= set(versions)
    # nothing of the extras (cluster, dev), nor the grader itself
    assert not {"dask", "distributed", "ruff", "batchnorm-assignment"} & set(versions)


def test_a_requirement_not_installed_stops_the_export():
    with pytest.raises(export.ExportError, match="not installed"):
        export.pinned_requirements(["no-such-distribution-here==1.0"])
    with pytest.raises(export.ExportError, match="the grader needs"):
        export.pinned_requirements([f"numpy=={metadata.version('numpy')}.post99"])


@pytest.mark.parametrize(("system", "machine"), [("darwin", "arm64"), ("linux", "aarch64"), ("win32", "AMD64")])
def test_the_export_refuses_a_machine_whose_pins_are_not_gradescopes(system, machine):
    with pytest.raises(export.ExportError, match="Linux x86_64"):
        export.check_target(system, machine)
    export.check_target("linux", "x86_64")


# --- slow: the real zip --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gradescope")
    assert export.main(["--output", str(folder), "--hidden-visibility", "hidden", "--leaderboard"]) == 0
    return folder / export.ZIP_NAME


@pytest.mark.slow
def test_the_zip_holds_the_scripts_the_configuration_the_wheel_and_the_data(exported):
    with zipfile.ZipFile(exported) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        [wheel_name] = [name for name in infos if name.endswith(".whl")]
        data_files = {f"fashion-mnist/{name}" for name in data.FILES.values()}
        assert set(infos) == {"setup.sh", "run_autograder", CONFIG_NAME, "requirements.txt", wheel_name,
                              "fashion-mnist/SHA256SUMS", *data_files}
        assert {name: _mode(i) for name, i in infos.items() if _mode(i) == 0o755} == \
            {"setup.sh": 0o755, "run_autograder": 0o755}
        config = json.loads(archive.read(CONFIG_NAME))
        assert GradescopeOptions.from_dict(config["options"]) == GradescopeOptions("hidden", "visible", True)
        assert settings.Settings.from_dict(config["settings"]).cache_dir == Path("/autograder/cache")
        wheel = zipfile.ZipFile(io.BytesIO(archive.read(wheel_name)))
    names = wheel.namelist()
    # the package with its hidden checks and templates; nothing else of the checkout
    assert {"autograder/checks/test_training_improvement.py", "autograder/templates/feedback.html",
            "autograder/platforms/gradescope.py", "autograder/checks/README.md"} <= set(names)
    assert all(n.startswith(("autograder/", "batchnorm_assignment-")) for n in names), names
    assert not [n for n in names if "solutions" in n or n.endswith(".ipynb")]


@pytest.mark.slow
def test_the_same_tree_exports_the_same_bytes(exported, tmp_path):
    assert export.main(["--output", str(tmp_path), "--hidden-visibility", "hidden", "--leaderboard"]) == 0
    assert (tmp_path / export.ZIP_NAME).read_bytes() == exported.read_bytes()


@pytest.mark.slow
def test_setup_sh_installs_the_grader_into_its_venv_and_warms_the_cache(exported, tmp_path, shared_grader_cache):
    """setup.sh as a trial (BN_GRADESCOPE_TRIAL: no apt-get, nothing outside the given folders), in a
    temporary root. With no network here, the venv sees this environment's site-packages through a .pth:
    pip must find every pinned requirement satisfied offline (the pins are this environment's), then
    installs the grader's wheel into the venv's own site-packages. The training baseline the session
    trained already (conftest.shared_grader_cache), when it has, is in the cache first: warming then
    reads it instead of training it again (run alone, the test trains it)."""
    source = tmp_path / "autograder" / "source"
    with zipfile.ZipFile(exported) as archive:
        archive.extractall(source)
    base_python = sys._base_executable
    venv = tmp_path / "venv"
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    site_packages = venv / "lib" / f"python{export.SUPPORTED_PYTHON}" / "site-packages"
    [grading_env] = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    (site_packages / "grading-environment.pth").write_text(grading_env + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(tmp_path / "home"), PIP_NO_INDEX="1", BN_GRADESCOPE_TRIAL="1",
               BN_GRADESCOPE_PREFIX=str(venv), BN_GRADESCOPE_PYTHON=base_python,
               BN_GRADESCOPE_CACHE=str(tmp_path / "cache"))
    env.pop("KERAS_HOME", None)
    if (shared_grader_cache / trainingcache.BASELINE).is_dir():
        shutil.copytree(shared_grader_cache / trainingcache.BASELINE, tmp_path / "cache" / trainingcache.BASELINE)
    done = subprocess.run(["bash", str(source / "setup.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Successfully installed batchnorm-assignment-1.0.0" in done.stdout
    assert "training baseline" in done.stdout and "setup.sh: done" in done.stdout
    assert oct(source.stat().st_mode & 0o777) == "0o700"
    assert list((tmp_path / "cache" / "training-baseline").glob("*.json"))
    keras_data = tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"
    assert {p.name for p in keras_data.iterdir()} == set(data.FILES.values())

    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import autograder, autograder.checks; print(autograder.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site_packages)), probe.stdout     # the wheel's copy
    # run_autograder's command, from the venv setup.sh made, on a submission laid out beside source/
    root = tmp_path / "autograder"
    config = json.loads((source / CONFIG_NAME).read_text())
    config["settings"]["cache_dir"] = str(tmp_path / "cache")          # the cache setup.sh warmed, not /autograder's
    (source / CONFIG_NAME).write_text(json.dumps(config))
    write_notebook(root / "submission", SETUP, MANUAL_BN, name="my answers.ipynb")
    run_autograder = tmp_path / "run_autograder"
    run_autograder.write_text(export.run_autograder_script(str(venv), str(root)))
    graded = subprocess.run(["bash", str(run_autograder)], cwd=root, env=env, capture_output=True, text=True,
                            timeout=600)
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == FULL_MARKS["manual_batch_norm"] and results["extra_data"]["isolation"] != "none"


def test_the_worker_gets_a_gigabyte_on_gradescope_unless_the_environment_says_otherwise():
    flags = settings.parent_parser().parse_args([])
    assert export.exported_settings({}, flags=flags).limits.memory_bytes == export.WORKER_MEMORY_BYTES == 1 << 30
    found = export.exported_settings({"BN_AUTOGRADER_MEMORY_MB": "3072", "BN_AUTOGRADER_CACHE": "/here"}, flags=flags)
    assert found.limits.memory_bytes == 3 << 30 and found.cache_dir == Path(export.CACHE_DIR)
    flags = settings.parent_parser().parse_args(["--cache-dir", "/srv/cache"])
    assert export.exported_settings({}, flags=flags).cache_dir == Path("/srv/cache")
