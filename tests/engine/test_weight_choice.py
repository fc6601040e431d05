"""``weights: auto``: the faster of the shipped file and its Q8_0 conversion, measured once in a
child process on the real files, chosen by the geometric mean of one-stream and 16-stream rates,
and kept in the cache directory so later starts skip the measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard.engine import weight_choice
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.kernel_probe import extra_buffers_run
from switchboard.engine.weights import prepare_weights


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    source = embedded_model_path()
    converted = prepare_weights(source, "q8_0", tmp_path_factory.mktemp("weights"), threads=2)
    assert converted != source
    return [converted, source]


def test_the_child_times_both_formats_on_the_real_files(candidates: list[Path]) -> None:
    rates = weight_choice._measure(candidates, threads=2,
                                   extra_buffers=extra_buffers_run(candidates[1]))
    assert rates is not None and len(rates) == 2
    for one, many in rates:
        assert 0 < one < many  # 16 streams decode more tokens per second than one


def test_the_higher_geometric_mean_wins_and_is_kept(
    candidates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Q8_0 faster together, the shipped file much faster alone (the 2-core VM's shape).
    measured = [[(90.0, 260.0), (160.0, 195.0)]]
    monkeypatch.setattr(weight_choice, "_measure", lambda *args: measured.pop())
    chosen = weight_choice.choose_weights(candidates, tmp_path, 2, extra_buffers=False)
    assert chosen == candidates[1]  # sqrt(160 * 195) > sqrt(90 * 260)
    kept = json.loads(next(tmp_path.glob("weight-choice.*.json")).read_text())
    assert kept["chosen"] == str(candidates[1])
    # The next start reads the verdict (a second measurement would find the list empty).
    assert weight_choice.choose_weights(candidates, tmp_path, 2, extra_buffers=False) \
        == candidates[1]
    # Another thread count is another verdict, measured again.
    measured.append([(90.0, 400.0), (100.0, 200.0)])
    assert weight_choice.choose_weights(candidates, tmp_path, 1, extra_buffers=False) \
        == candidates[0]


def test_a_failed_measurement_serves_the_first_candidate_and_keeps_nothing(
    candidates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weight_choice, "_measure", lambda *args: None)
    assert weight_choice.choose_weights(candidates, tmp_path, 2, extra_buffers=False) \
        == candidates[0]
    assert not list(tmp_path.glob("weight-choice.*"))


def test_a_single_candidate_is_not_measured(candidates: list[Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weight_choice, "_measure", pytest.fail)
    assert weight_choice.choose_weights(candidates[:1], tmp_path, 2, True) == candidates[0]
