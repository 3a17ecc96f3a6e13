"""kfitx.data.epoch_iterator: model.fit's step and pass rules, each once, on plain Python passes (no model)."""

from __future__ import annotations

import warnings

import pytest

from kfitx.data import epoch_iterator
from kfitx.data.epoch_iterator import OUT_OF_DATA, EpochIterator, PassCount, limit_steps
from kfitx.errors import DataError


class Passes:
    """Opens passes of ``length`` numbered batches (``None``: endless), counting opens and closes."""

    def __init__(self, length: int | None, *, empty_after: int | None = None) -> None:
        self.length, self.empty_after = length, empty_after
        self.opened = self.closed = 0
        self.next = 0

    def __call__(self):
        self.opened += 1
        count = 0 if self.empty_after is not None and self.opened > self.empty_after else self.length

        def one_pass():
            i = 0
            while count is None or i < count:
                self.next += 1
                yield self.next - 1
                i += 1

        def close():
            self.closed += 1

        return one_pass(), close


def epochs(iterator: EpochIterator, n: int) -> tuple[list[list[tuple[int, int, list]]], list[str]]:
    """``n`` epochs' groups, and the warnings they gave."""
    got = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(n):
            got.append([(begin, end, list(data)) for begin, end, data in iterator.epoch(epoch)])
    return got, [str(w.message) for w in caught]


def batches(groups) -> list[int]:
    return [b for _, _, data in groups for b in data]


def test_without_steps_per_epoch_each_epoch_is_one_fresh_pass():
    passes = Passes(5)
    got, said = epochs(EpochIterator(passes, steps=None, pass_length=5, group=1), 2)
    assert [batches(e) for e in got] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and not said
    assert passes.opened >= 2


def test_steps_per_epoch_shorter_than_a_pass_carries_the_pass_into_the_next_epoch():
    passes = Passes(5)
    got, said = epochs(EpochIterator(passes, steps=3, pass_length=5, group=1), 3)
    # Keras's rule: the rest of the pass, and the epoch ends where the pass does ("ran out").
    assert [batches(e) for e in got] == [[0, 1, 2], [3, 4], [5, 6, 7]]
    assert said == [OUT_OF_DATA]


@pytest.mark.parametrize("length", [5, None])
def test_steps_per_epoch_longer_than_the_data_ends_the_epoch_with_keras_warning(length):
    passes = Passes(5)
    got, said = epochs(EpochIterator(passes, steps=7, pass_length=length, group=1), 2)
    assert [batches(e) for e in got] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert said == [OUT_OF_DATA, OUT_OF_DATA]


def test_a_pass_of_unknown_length_with_shorter_steps_is_carried_then_runs_out():
    got, said = epochs(EpochIterator(Passes(5), steps=3, pass_length=None, group=1), 3)
    assert [batches(e) for e in got] == [[0, 1, 2], [3, 4], [5, 6, 7]] and said == [OUT_OF_DATA]


def test_groups_report_begin_plus_group_minus_one_or_the_last_batch_when_kfitx_chose_the_group():
    asked, _ = epochs(EpochIterator(Passes(10), steps=None, pass_length=10, group=4), 1)
    assert [(b, e, len(d)) for b, e, d in asked[0]] == [(0, 3, 4), (4, 7, 4), (8, 11, 2)]
    chosen, _ = epochs(EpochIterator(Passes(10), steps=None, pass_length=10, group=4, last_batch=True), 1)
    assert [e for _, e, _ in chosen[0]] == [3, 7, 9]


def test_groups_are_whole_as_keras_reads_them_and_the_pass_ends_the_next_epoch():
    got, _ = epochs(EpochIterator(Passes(10), steps=5, pass_length=10, group=2), 2)
    assert [[e for _, e, _ in epoch] for epoch in got] == [[1, 3, 5], [1, 3]]  # 6 batches, then the 4 left


def test_the_compiled_step_reads_the_iterator_itself_and_running_out_ends_the_epoch():
    passes = Passes(3)
    iterator = EpochIterator(passes, steps=5, pass_length=None, group=2, pull=False)
    groups = iterator.epoch(0)
    begin, end, data = next(groups)
    assert (begin, end, next(data), next(data)) == (0, 1, 0, 1)
    with pytest.warns(UserWarning, match="ran out of data"):
        iterator.ran_out()
    assert passes.closed == 1


def test_a_factory_stream_is_refilled_and_never_runs_out():
    passes = Passes(3)
    got, said = epochs(EpochIterator(passes, steps=5, pass_length=None, group=2, refill=True, checked=True,
                                     kind="generator"), 2)
    # Whole groups of 2 over steps_per_epoch=5: 6 batches an epoch, each pass of 3 followed by the next.
    assert [batches(e) for e in got] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]] and not said
    assert passes.opened == 4


def test_each_batch_is_prepared_with_its_epoch_and_index():
    seen = []
    iterator = EpochIterator(Passes(3), steps=None, pass_length=None, group=2,
                             prepare=lambda b, epoch, index: seen.append((epoch, index)) or -b)
    got, _ = epochs(iterator, 1)
    assert batches(got[0]) == [0, -1, -2] and seen == [(0, 0), (0, 1), (0, 2)]


# -- the pass rules of Python batches: one wording per mistake ----------------------------------


def test_an_empty_pass_is_an_error_also_when_a_refill_finds_one():
    with pytest.raises(DataError, match=r"at least one batch each time it is started.*no batches in pass 1"):
        epochs(EpochIterator(Passes(0), steps=None, pass_length=None, group=1, checked=True, kind="generator"), 1)
    refilled = EpochIterator(Passes(2, empty_after=1), steps=5, pass_length=None, group=1, checked=True,
                             refill=True, kind="generator")
    with pytest.raises(DataError, match=r"at least one batch each time it is started.*no batches in pass 2"):
        epochs(refilled, 1)


def test_a_pass_shorter_than_its_length_is_an_error():
    with pytest.raises(DataError, match=r"the 5 batches its length says.*Received: 3 batch\(es\) in pass 1"):
        epochs(EpochIterator(Passes(3), steps=None, pass_length=5, group=1, checked=True, kind="PyDataset"), 1)


def test_an_endless_pass_without_steps_is_an_error_after_a_warning(monkeypatch):
    monkeypatch.setattr(epoch_iterator, "ENDLESS_WARNING", 3)
    endless = EpochIterator(Passes(None), steps=None, pass_length=None, group=1, checked=True, kind="generator",
                            endless_after=6)
    with pytest.warns(RuntimeWarning, match="yielded 3 batches in one pass without ending"):
        with pytest.raises(DataError, match=r"must end.*endless_after=6 batches in pass 1.*steps_per_epoch=N"):
            list(endless.epoch(0))
    # With steps_per_epoch a pass may run on.
    got, said = epochs(EpochIterator(Passes(None), steps=8, pass_length=None, group=1, checked=True,
                                     endless_after=6), 1)
    assert len(batches(got[0])) == 8 and not said


def test_a_pass_count_is_the_one_wording_the_worker_reports_too():
    count = PassCount("generator", "pass 2", endless_after=1)
    count.add()
    with pytest.raises(DataError) as too_long:
        count.add()
    assert str(too_long.value) == str(count.too_long(1))
    with pytest.raises(DataError, match="no batches in pass 4"):
        PassCount("generator", "pass 4").end()


def test_max_steps_per_epoch_limits_steps_with_keras_warning():
    keras = pytest.importorskip("keras")
    keras.config.set_max_steps_per_epoch(3)
    try:
        with pytest.warns(UserWarning, match="Limiting steps_per_epoch to 3"):
            assert limit_steps(None) == 3
        with pytest.warns(UserWarning, match="Limiting steps_per_epoch to 3"):
            assert limit_steps(10) == 3
        assert limit_steps(2) == 2
    finally:
        keras.config.set_max_steps_per_epoch(None)
    assert limit_steps(10) == 10


@pytest.mark.parametrize("factory, endless_after", [(lambda: iter([]), 100),
                                                    (lambda: iter(lambda: (1.0, 1.0), None), 3)],
                         ids=["empty", "endless"])
def test_the_worker_and_a_strategys_loop_say_the_same_for_the_same_mistake(factory, endless_after):
    pytest.importorskip("tensorflow")
    import numpy as np

    import kfitx
    from kfitx.data import Reading

    source = kfitx.data.generator(lambda: ((np.ones((2, 1)), np.ones((2, 1))) for _ in factory()))
    reading = Reading(endless_after=endless_after)
    with pytest.raises(DataError) as in_loop:
        list(source.feed(reading).epoch(0))
    with pytest.raises(DataError) as in_worker, kfitx.data.boundary():
        list(source.as_dataset(reading))
    assert str(in_worker.value) == str(in_loop.value)


def test_a_generator_raising_is_said_the_same_by_the_worker_and_a_strategys_loop():
    pytest.importorskip("tensorflow")
    import numpy as np

    import kfitx
    from kfitx.data import Reading

    def batches():
        for i in range(6):
            if i == 3:
                raise KeyError("no such file")
            yield np.ones((2, 1)), np.ones((2, 1))

    source = kfitx.data.generator(batches)
    with pytest.raises(DataError) as in_loop:
        list(source.feed(Reading()).epoch(0))
    with pytest.raises(DataError) as in_worker, kfitx.data.boundary():
        list(source.as_dataset(Reading()))
    assert str(in_worker.value) == str(in_loop.value)
    assert "KeyError(\"'no such file'\") at batch 3 of pass 1 of the generator" in str(in_loop.value)
    assert isinstance(in_loop.value.__cause__, KeyError)  # the user's traceback, where it failed
