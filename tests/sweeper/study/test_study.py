"""Study loading and validation: the malformed corpus, the shipped studies, warnings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sweeper.study.load import load_study
from sweeper.study.model import Study, StudyError
from sweeper.study.yaml_reader import StudyProblem

REPO = Path(__file__).resolve().parents[3]
MALFORMED = Path(__file__).parents[1] / "malformed"
CPU_ONLY = {"CPU": 2, "GPU": 0}
SHIPPED = sorted((REPO / "studies").glob("*.yaml"))

VALID = """\
name: ok
dataset: fashion-mnist-sample
trial: {epochs: 2}
objectives: {knn_top1: max}
"""


def _header(path: Path) -> dict[str, str]:
    found = {}
    for raw in path.read_bytes().splitlines():
        match = re.match(rb"# (expect|line|path): (.*)$", raw)
        if not match:
            break
        found[match[1].decode()] = match[2].decode()
    return found


def _problems(path: Path, **kwargs) -> list[StudyProblem]:
    with pytest.raises(StudyError) as info:
        load_study(path, **kwargs)
    return info.value.problems


def _write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_corpus_is_large_enough():
    assert len(list(MALFORMED.glob("*.yaml"))) >= 30


@pytest.mark.parametrize("path", sorted(MALFORMED.glob("*.yaml")), ids=lambda p: p.stem)
def test_malformed_study_is_refused_with_file_line_and_path(path: Path):
    header = _header(path)
    assert "expect" in header, f"{path.name} has no '# expect:' line"
    with pytest.raises(StudyError) as info:
        load_study(path, cluster_resources=CPU_ONLY)
    message = str(info.value)
    assert header["expect"] in message
    lines = message.splitlines()
    assert len(lines) == len(info.value.problems) >= 1
    for line in lines:  # every problem names the file and a line
        assert re.match(re.escape(str(path)) + r":\d+[ :]", line), line
    matching = [p for p in info.value.problems if header["expect"] in str(p)]
    assert matching
    if "line" in header:
        assert any(p.line == int(header["line"]) for p in matching), lines
    if "path" in header:
        assert any(p.key_path == header["path"] for p in matching), lines


def test_every_problem_is_reported_at_once(tmp_path: Path):
    path = _write(tmp_path, """\
name: three
dataset: fashion-mnist-sample
trial:
  data_fraction: 1.5
space:
  backbone.width: {grid: [0.5, wide]}
objectives: {knn_top1: max}
scheduler: {type: hyperband}
""")
    problems = _problems(path)
    assert [(p.line, p.key_path) for p in problems] == [
        (4, "trial.data_fraction"),
        (6, "space.backbone.width.grid[1]"),
        (8, "scheduler.type"),
    ]
    assert str(problems[1]) == f"{path}:6 space.backbone.width.grid[1]: 'wide' (str) is not a number"


def test_nothing_is_written_while_validating(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, VALID.replace("epochs: 2", "epochs: -1"))
    _problems(path)
    load_study(_write(tmp_path, VALID, "good.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.yaml", "study.yaml"]


def test_huge_file_is_refused_by_size_before_reading(tmp_path: Path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:  # sparse: 50 MB without writing 50 MB
        f.write(b"name: huge\n")
        f.truncate(50_000_000)
    (problem,) = _problems(path)
    assert "50.0 MB" in str(problem) and "at most 1.0 MB" in str(problem)
    assert str(problem).startswith(f"{path}:1")


def test_missing_file(tmp_path: Path):
    (problem,) = _problems(tmp_path / "nope.yaml")
    assert "cannot read" in problem.message


def test_python_tag_is_never_constructed(tmp_path: Path):
    marker = tmp_path / "constructed"
    path = _write(tmp_path, VALID + f"description: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n")
    _problems(path)
    assert not marker.exists()


def test_scientific_floats_without_dot_are_numbers(tmp_path: Path):
    study = load_study(_write(tmp_path, VALID.replace("epochs: 2", "epochs: 2, optimizer: {lr: 1e-1, weight_decay: 5e-4}")))
    assert study.base_trial["optimizer"] == {"lr": 0.1, "weight_decay": 0.0005}


def test_defaults_and_fields(tmp_path: Path):
    study = load_study(_write(tmp_path, VALID))
    assert isinstance(study, Study)
    assert study.base_trial == {"dataset": "fashion-mnist-sample", "epochs": 2}
    assert study.seeds == (0,)
    assert study.space == {}
    assert (study.search.algorithm, study.search.num_samples, study.search.seed) == ("grid", 1, 0)
    assert (study.scheduler.type, study.scheduler.grace_period, study.scheduler.reduction_factor) == ("none", 1, 3)
    assert (study.resources.cpu, study.resources.gpu) == (1, 0)
    assert study.max_concurrent == 4
    assert (study.budget.gpu_hours, study.budget.pflops) == (None, None)
    assert study.failure.max_retries == 2
    assert study.cluster.address is None
    assert (study.storage, study.report) == ("runs/", "reports/")
    assert study.trial_config().epochs == 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_study_validates_and_round_trips(path: Path, tmp_path: Path):
    study = load_study(path)
    assert study.name == path.stem
    resolved = _write(tmp_path, yaml.safe_dump(study.to_dict(), sort_keys=False), "resolved.yaml")
    again = load_study(resolved)
    assert again.to_dict() == study.to_dict()


def test_expected_studies_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"quickstart", "resolution", "width", "depth", "data_fraction", "epochs", "s3l"} <= names


def test_quickstart_fits_a_cpu_only_machine():
    study = load_study(REPO / "studies" / "quickstart.yaml", cluster_resources=CPU_ONLY)
    assert study.dataset == "fashion-mnist-sample"
    assert study.resources.gpu == 0


def test_gpu_study_is_refused_on_a_cpu_only_cluster():
    problems = _problems(REPO / "studies" / "resolution.yaml", cluster_resources=CPU_ONLY)
    assert [p.message for p in problems] == ["asks for 0.25 GPU per trial but the cluster has 0 GPUs"]


def test_upsampling_is_a_warning_not_a_problem(tmp_path: Path):
    path = _write(tmp_path, VALID + "space:\n  resolution: {grid: [14, 28, 56]}\n")
    study = load_study(path)
    assert study.warnings == (
        f"{path}:6 space.resolution.grid[2]: 56 px is larger than fashion-mnist-sample's 28 px images: they will be upsampled",
    )


def test_upsampling_warning_for_stages_and_trial(tmp_path: Path):
    path = _write(tmp_path, VALID.replace("fashion-mnist-sample", "digits").replace(
        "trial: {epochs: 2}", "trial: {resolution: [{resolution: 8, fraction: 0.5}, {resolution: 16, fraction: 0.5}]}"))
    (warning,) = load_study(path).warnings
    assert "trial.resolution: 16 px is larger than digits's 8 px" in warning


def test_optuna_tpe_with_two_objectives_warns(tmp_path: Path):
    path = _write(tmp_path, VALID.replace("{knn_top1: max}", "{knn_top1: max, train_pflops: min}")
                  + "search: {algorithm: optuna-tpe, num_samples: 4}\nspace:\n  backbone.width: {uniform: [0.25, 1.0]}\n")
    (warning,) = load_study(path).warnings
    assert "optimises the first objective only" in warning


def test_duplicate_space_keys_name_both_lines(tmp_path: Path):
    path = _write(tmp_path, VALID + """\
space:
  resolution: {grid: [[{resolution: 14, fraction: 0.5}, {resolution: 28, fraction: 0.5}]]}
  resolution: {grid: [14]}
""")
    (problem,) = _problems(path)
    assert "duplicate key 'resolution' (lines 6 and 7)" in str(problem)


def test_space_entries_with_all_kinds(tmp_path: Path):
    path = _write(tmp_path, VALID + """\
search: {algorithm: random, num_samples: 3, seed: 7}
seeds: [0, 1]
space:
  resolution: {choice: [14, 28, [{resolution: 14, epochs: 1}, {resolution: 28, epochs: 1}]]}
  backbone.width: {uniform: [0.25, 1.0]}
  optimizer.lr: {loguniform: [0.05, 1.0]}
  epochs: {int: [1, 3]}
  method: {grid: [simclr, byol]}
""")
    study = load_study(path)
    assert [s.kind for s in study.space.values()] == ["choice", "uniform", "loguniform", "int", "grid"]
    assert study.space["epochs"].values == (1, 3)


def test_rejected_tag_is_reported_once():
    problems = _problems(MALFORMED / "python_object_tag.yaml")
    assert len(problems) == 1


def test_problems_after_a_merge_key_are_still_reported(tmp_path: Path):
    path = _write(tmp_path, VALID.replace("trial: {epochs: 2}", "trial:\n  <<: {epochs: 2}\n  epochs: -1"))
    messages = [str(p) for p in _problems(path)]
    assert any("merge keys" in m for m in messages) and any("trial.epochs: -1" in m for m in messages)


def test_warnings_travel_with_a_refused_study(tmp_path: Path):
    path = _write(tmp_path, VALID.replace("epochs: 2", "epochs: 0") + "space:\n  resolution: {grid: [56]}\n")
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert any("upsampled" in w for w in info.value.warnings)


def _project_exception_classes() -> set[type]:
    import importlib
    import inspect
    import pkgutil

    import s3l_core
    import sweeper

    found = set()
    for package in (s3l_core, sweeper):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found.add(cls)
    return found


def test_every_project_exception_pickles_round_trip():
    """Ray pickles a worker's exception to the driver: its text must survive (not 'd; a; t; a; ...')."""
    import pickle

    from s3l_core.atomic import UnsafeFolderError
    from s3l_core.checkpoint import CheckpointError
    from s3l_core.config import ConfigError, ConfigProblem
    from s3l_core.image_dataset import DatasetError
    from s3l_core.safe_pickle import UnsafePickleError
    from sweeper.cli import UserFacingError
    from sweeper.store.lease import LeaseLost
    from sweeper.tune.runner import StudyInterrupted
    from tests.browser import WebDriverError
    from sweeper.tune.runner import ClusterError
    from sweeper.store.local import StoreError
    from sweeper.study.overrides import OverrideSyntaxError

    samples = [
        ConfigError([ConfigProblem("dataset", "unknown dataset 'x'"), ConfigProblem("epochs", "0 must be >= 1")]),
        StudyError([StudyProblem("s.yaml", 3, "seeds[0]", "-1 is not a non-negative integer")], ("s.yaml:1 w: warn",)),
        CheckpointError("checkpoint c.pt is unreadable"), DatasetError("dataset cifar10: data_dir /x does not exist"),
        UnsafePickleError("refused to load posix.system"), UserFacingError("store busy"), StoreError("store full"),
        ClusterError("cannot reach the Ray cluster at h:1"), UnsafeFolderError("reports/x is a symbolic link"),
        WebDriverError("chromedriver did not start"), LeaseLost("s3://b/runs/x", "pid 7 on host (lease generation 2)"),
        StudyInterrupted("study x was interrupted: 1 of 2 trials finished"),
        OverrideSyntaxError("--set 'x': expected KEY=VALUE, e.g. --set trial.epochs=2"),
    ]  # fmt: skip
    private = {cls for cls in _project_exception_classes() if cls.__name__.startswith("_")}
    assert _project_exception_classes() - private <= {type(s) for s in samples}, "add a sample of the new exception here"
    for sample in samples:
        copy = pickle.loads(pickle.dumps(sample))
        assert type(copy) is type(sample) and str(copy) == str(sample)
        assert getattr(copy, "problems", None) == getattr(sample, "problems", None)


def test_integral_floats_are_accepted_for_study_and_trial_integers_alike(tmp_path: Path):
    path = _write(tmp_path, VALID.replace("trial: {epochs: 2}", "trial: {epochs: 2.0}") + "max_concurrent: 2.0\nseeds: [0.0, 1]\nfailure: {max_retries: 1.0}\n")
    study = load_study(path)
    assert study.max_concurrent == 2 and isinstance(study.max_concurrent, int)
    assert study.trial_config().epochs == 2 and study.seeds == (0, 1) and study.failure.max_retries == 1


def _imagefolder(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("L", (8, 8), color=i * 40).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("classes", "expect"),
    [({"only": 3}, "has 1 class folder; at least 2 are needed"), ({"cat": 2, "dog": 0}, "class folders without images: dog")],
    ids=["one_class", "empty_class"],
)
def test_imagefolder_with_one_class_or_an_empty_class_is_refused(tmp_path: Path, classes: dict[str, int], expect: str):
    folder = _imagefolder(tmp_path / "images", classes)
    path = _write(tmp_path, VALID.replace("dataset: fashion-mnist-sample", f"dataset: imagefolder:{folder}"))
    problems = _problems(path)
    assert [(p.key_path, p.line) for p in problems] == [("dataset", 2)] and expect in problems[0].message
    _imagefolder(tmp_path / "good", {"cat": 1, "dog": 1})
    load_study(_write(tmp_path, VALID.replace("dataset: fashion-mnist-sample", f"dataset: imagefolder:{tmp_path / 'good'}"), "good.yaml"))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_given_as_a_study_is_refused_without_blocking(tmp_path: Path, kind: str):
    import os
    import subprocess
    import sys

    path = Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "study.yaml"
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    done = subprocess.run([sys.executable, "-m", "sweeper", "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {path}: is not a regular file (a FIFO, device or socket), not a study file"


def test_a_grid_at_the_trial_cap_validates_and_one_over_it_is_refused(tmp_path: Path):
    widths = ", ".join(str(0.125 * i) for i in range(1, 101))
    fractions = ", ".join(str(round(0.01 * i, 2)) for i in range(1, 101))
    at_cap = VALID + f"space:\n  backbone.width: {{grid: [{widths}]}}\n  data_fraction: {{grid: [{fractions}]}}\n"
    assert len(load_study(_write(tmp_path, at_cap)).space) == 2  # 10,000 trials: accepted (its speed: bench/startup.py, not a test)
    problems = _problems(_write(tmp_path, at_cap + "seeds: [0, 1]\n", "over.yaml"))
    assert any(p.key_path == "space" and "20,000 trials" in p.message for p in problems)


def test_relative_imagefolder_paths_resolve_against_the_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray worker's working directory is not the user's: `imagefolder:images` in
    studies/x.yaml means studies/images, from wherever `run` was started."""
    from PIL import Image

    for split, cls in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "b")):
        (tmp_path / "studies" / "images" / split / cls).mkdir(parents=True)
        Image.new("L", (8, 8), 50).save(tmp_path / "studies" / "images" / split / cls / "1.png")
    study_file = tmp_path / "studies" / "x.yaml"
    study_file.write_text(VALID.replace("dataset: fashion-mnist-sample", "dataset: imagefolder:images"))
    monkeypatch.chdir(tmp_path)  # not the study's folder
    study = load_study(study_file, cluster_resources=CPU_ONLY)
    assert study.dataset == f"imagefolder:{(tmp_path / 'studies' / 'images').resolve()}"
    assert study.trial_config().dataset == study.dataset


def test_settings_that_cannot_take_effect_are_warnings(tmp_path: Path) -> None:
    """No setting is a silent no-op: a temperature for BYOL, colour jitter's hue on grey images,
    turning off a blur the 28 px presets already drop."""
    path = tmp_path / "w.yaml"
    path.write_text(VALID.replace("trial: {epochs: 2}", "trial: {epochs: 2, method: byol, method_params: {temperature: 0.5, ema: 0.9}, "
                                  "augment: {blur: false, color_jitter: 0.4}}"))
    warnings = "\n".join(load_study(path, cluster_resources=CPU_ONLY).warnings)
    assert "trial.method_params.temperature: has no effect on byol" in warnings
    assert "trial.augment.color_jitter" in warnings and "trial.augment.blur" in warnings
    assert "ema" not in warnings  # BYOL reads it


def test_a_finetune_objective_needs_finetuning(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(VALID.replace("objectives: {knn_top1: max}", "objectives: {finetune_top1: max}"))
    (problem,) = _problems(path, cluster_resources=CPU_ONLY)
    assert problem.key_path == "objectives.finetune_top1" and "trial.eval.finetune" in problem.message
    path.write_text(VALID.replace("objectives: {knn_top1: max}", "objectives: {finetune_top1: max}").replace("trial: {epochs: 2}", "trial: {epochs: 2, eval: {finetune: {epochs: 1}}}"))
    assert load_study(path, cluster_resources=CPU_ONLY).objectives == {"finetune_top1": "max"}
    path.write_text(VALID.replace("objectives: {knn_top1: max}", "objectives: {linear_top1: max}").replace("trial: {epochs: 2}", "trial: {epochs: 2, eval: {linear_probe: false}}"))
    with pytest.raises(StudyError) as info:
        load_study(path, cluster_resources=CPU_ONLY)
    assert "objectives.linear_top1" in str(info.value) and "trial.eval.linear_probe: true" in str(info.value)


# A 1.3 KB text, as /etc/passwd is: what a study symlinked to another file may read as one long string.
PASSWD_LIKE = "\n".join(f"user{i}:x:{1000 + i}:{1000 + i}:User {i} SECRET-LINE-{i}:/home/user{i}:/bin/bash" for i in range(20)) + "\n"
LONG_TEXT = " ".join(f"SECRET-WORD-{i}" for i in range(120))  # one value of 1.7 KB, on one line


@pytest.mark.parametrize("case", ["symlink to a text file", "the whole file one string", "long section value", "long trial value",
                                  "long name", "long dataset", "long invalid scalar"])
def test_no_error_line_quotes_file_contents_beyond_the_value_at_fault(case: str, tmp_path: Path, capsys):
    """An error names the key and value at fault and, for a long value, only its first characters and
    its length: never kilobytes of a file (a study symlinked to /etc/passwd was quoted whole)."""
    from sweeper.cli import main

    texts = {
        "the whole file one string": PASSWD_LIKE,
        "long section value": f"name: bad\ndataset: fashion-mnist-sample\nobjectives: {{knn_top1: max}}\nsearch: {LONG_TEXT}\n",
        "long trial value": f"name: bad\ndataset: fashion-mnist-sample\nobjectives: {{knn_top1: max}}\ntrial: {{epochs: {LONG_TEXT}}}\n",
        "long name": f"name: {LONG_TEXT}\ndataset: fashion-mnist-sample\nobjectives: {{knn_top1: max}}\n",
        "long dataset": f"name: bad\ndataset: {LONG_TEXT}\nobjectives: {{knn_top1: max}}\n",
        "long invalid scalar": f"name: bad\ndataset: fashion-mnist-sample\nobjectives: {{knn_top1: max}}\n"
                               f"trial: {{epochs: !!int '{LONG_TEXT}'}}\n",
    }
    if case == "symlink to a text file":
        target = tmp_path / "passwd"
        target.write_text(PASSWD_LIKE)
        path = tmp_path / "study.yaml"
        path.symlink_to(target)
    else:
        path = _write(tmp_path, texts[case])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith(f"error: {path}:") for line in lines), err
    assert all(len(line) < 400 for line in lines), [len(line) for line in lines]
    quoted = re.findall(r"SECRET-(?:LINE|WORD)-\d+", err)
    assert len(quoted) <= 3, quoted  # at most the first characters of the value at fault
