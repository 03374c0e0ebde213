"""`--set KEY=VALUE` on run, estimate and validate: an edit of the study file given on the command
line, validated as the edited file is and giving its trial ids (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeper.cli import main
from sweeper.study.plan import point_trial_id, unique_points
from sweeper.study.load import load_study
from sweeper.study.model import StudyError
from sweeper.study.overrides import parse_overrides
from tests.sweeper.conftest import TINY_TRIAL, write_study


def _trial_ids(study) -> list[str]:
    return [point_trial_id(study, p) for p in unique_points(study)]


def test_a_set_changes_the_resolved_study_and_gives_the_edited_files_trial_ids(tmp_path: Path):
    path = write_study(tmp_path, grid=[8, 12])
    sets = ["trial.epochs=3", "space.resolution.grid=[8, 16]", "seeds=[0,1]", "trial.backbone.width=0.25"]
    overridden = load_study(path, overrides=parse_overrides(sets))
    edited_dir = tmp_path / "edited"
    edited_dir.mkdir()
    trial = {**TINY_TRIAL, "epochs": 3, "backbone": {**TINY_TRIAL["backbone"], "width": 0.25}}
    edited = load_study(write_study(edited_dir, grid=[8, 16], seeds=[0, 1], trial=trial, storage=str(tmp_path / "runs"), report=str(tmp_path / "reports")))
    assert overridden.to_dict() == edited.to_dict()
    assert overridden.base_trial["epochs"] == 3 and overridden.seeds == (0, 1)
    assert _trial_ids(overridden) == _trial_ids(edited) and len(_trial_ids(edited)) == 4
    assert set(_trial_ids(overridden)).isdisjoint(_trial_ids(load_study(path)))  # epochs and width are in every id
    assert overridden.overrides == tuple(sets)


def test_a_set_of_a_dotted_space_knob_edits_that_knobs_entry(tmp_path: Path):
    """`space`'s keys hold dots (`backbone.width`): the longest key the mapping has is the one set."""
    path = write_study(tmp_path, space={"backbone.width": {"grid": [0.125, 0.25]}})
    study = load_study(path, overrides=parse_overrides(["space.backbone.width.grid=[0.25]", "space.resolution={grid: [8, 12]}"]))
    assert {k: s.values for k, s in study.space.items()} == {"backbone.width": (0.25,), "resolution": (8, 12)}


def test_a_later_set_wins_as_a_later_edit_would(tmp_path: Path):
    study = load_study(write_study(tmp_path), overrides=parse_overrides(["trial.epochs=3", "trial.epochs=4"]))
    assert study.base_trial["epochs"] == 4


def test_an_unknown_set_key_is_one_line_at_the_set_exit_2(tmp_path: Path, capsys):
    path = write_study(tmp_path)
    for command in (["validate"], ["estimate"], ["run", "--dry-run"]):
        assert main([*command, str(path), "--set", "trial.epochz=2"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {path} --set trial.epochz: unknown key (did you mean 'epochs'?)\n", command
    assert not (tmp_path / "runs").exists()


def test_a_bad_set_value_is_reported_at_its_set_and_once(tmp_path: Path):
    path = write_study(tmp_path)
    with pytest.raises(StudyError) as caught:
        load_study(path, overrides=parse_overrides(["seeds=[0, 1", "trial.epochs=!!python/object:os.system {}", "space.backbone.widht.grid=[1]"]))
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path} --set seeds: YAML syntax error")
    assert lines[1] == f"{path} --set trial.epochs: tag '!!python/object:os.system' is not allowed: a study is plain YAML data"
    assert lines[2].startswith(f"{path} --set space.backbone.widht.grid space.backbone.widht: unknown knob 'backbone.widht'") and "backbone.width" in lines[2]


def test_a_problem_of_the_file_is_still_at_its_line(tmp_path: Path):
    """An override elsewhere leaves the file's own mistakes located at their lines."""
    path = tmp_path / "s.yaml"
    study = yaml.safe_load(write_study(tmp_path).read_text())
    study["trial"]["epocks"] = 2
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    with pytest.raises(StudyError) as caught:
        load_study(path, overrides=parse_overrides(["trial.epochs=3"]))
    [problem] = caught.value.problems
    assert problem.origin == "" and problem.line > 1 and problem.key_path == "trial.epocks"


def test_a_set_replacing_a_bad_file_value_clears_its_problem(tmp_path: Path):
    """`--set` is the edit: a value the file got wrong and the command line replaces is no problem,
    whether the checks (a word for a number) or the reader (a refused tag) found it."""
    path = write_study(tmp_path)
    text = path.read_text()
    assert text.count("epochs: 2\n") == 1
    for bad in ("two", "!!python/object:os.system {}"):
        path.write_text(text.replace("epochs: 2\n", f"epochs: {bad}\n"))
        with pytest.raises(StudyError):
            load_study(path)
        assert load_study(path, overrides=parse_overrides(["trial.epochs=5"])).base_trial["epochs"] == 5


@pytest.mark.parametrize("bad", ["trial.epochs", "=2", "trial..epochs=2"])
def test_a_malformed_set_is_one_line_exit_2(bad: str, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path)
    for command in (["validate"], ["estimate"], ["run"]):
        assert main([*command, str(path), "--set", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: --set {bad!r}: ") and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_validate_with_a_set_says_ok_and_estimate_shows_the_overridden_trials(tmp_path: Path, capsys):
    path = write_study(tmp_path, grid=[8])
    assert main(["validate", str(path), "--set", "seeds=[0, 1, 2]"]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"
    assert main(["run", str(path), "--dry-run", "--set", "seeds=[0, 1, 2]"]) == 0
    assert "total: 3 trials" in capsys.readouterr().out
