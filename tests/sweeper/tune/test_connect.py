"""An embedded Ray that does not start is one `error:` line with its likely cause and exit 2, as an
unreachable cluster address is (`sweeper/tune/cluster.py`), instead of Ray's 25-line traceback."""

from __future__ import annotations

import pytest

from sweeper.cli import main
from tests.sweeper.conftest import write_study

# What Ray 2.60 raises (ray/_private/node.py) when its raylet has not registered within 30 s.
RAY_START_TIMEOUT = ("The current node timed out during startup. This could happen because some of the raylet failed to startup "
                     "or the GCS has become overloaded.")


@pytest.mark.parametrize(("error", "cause"), [(Exception(RAY_START_TIMEOUT), "this machine is too busy"),
                                              (OSError(28, "No space left on device"), "Ray's temp folder")], ids=["timeout", "disk-full"])
def test_an_embedded_ray_that_fails_to_start_is_one_line_with_its_likely_cause_and_exit_2(error, cause, tmp_path, capsys, monkeypatch):
    import ray

    def fail_to_start(*args, **kwargs):
        raise error

    shutdowns: list[bool] = []
    monkeypatch.setattr(ray, "init", fail_to_start)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `run` process
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))  # leaves the session's Ray, if any, alone
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = write_study(tmp_path, name="nostart", grid=[8])
    assert main(["run", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot start the embedded Ray on 127.0.0.1: {str(error).splitlines()[0][:80]}"), lines[0]
    assert f"likely cause: {cause}" in lines[0] and "--address" in lines[0]
    assert shutdowns  # whatever part of Ray had started is stopped
