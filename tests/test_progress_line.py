"""The search's progress line counts each trial once: done or running, never both."""

from __future__ import annotations

from types import SimpleNamespace

from samplegan_tune.tuning.search import ProgressLine


def test_a_trial_being_completed_is_done_not_running(capsys) -> None:
    line = ProgressLine(total=2)
    first = SimpleNamespace(trial_id="a", status="RUNNING", config={}, last_result={})
    second = SimpleNamespace(trial_id="b", status="RUNNING", config={}, last_result={})
    trials = [first, second]
    for trial in trials:
        line.on_trial_start(0, trials, trial)
    first.status = "TERMINATED"
    line.on_trial_complete(1, trials, first)
    # Tune calls back before it marks the trial stopped: it is still RUNNING here.
    line.on_trial_complete(2, trials, second)
    *_, last = capsys.readouterr().out.strip().splitlines()
    assert last.startswith("[search] 2/2 done, 0 running"), last
    line.on_trial_start(3, trials, second)  # restarted (a resume): running again, not done
    line.on_trial_result(4, trials, second, {})
    line._print(trials)
    *_, last = capsys.readouterr().out.strip().splitlines()
    assert last.startswith("[search] 1/2 done, 1 running"), last
