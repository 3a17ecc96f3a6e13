"""The conformance kit passes the built-in strategies and names the rule a broken strategy breaks."""

import copy
import threading
import types
from dataclasses import replace

import pytest

import kfitx
from kfitx.errors import ConformanceError
from kfitx.testing import RULES, StrategyConformance, check_strategy


class Delegating(kfitx.Strategy):
    """A correct strategy: model.fit on the arrays. Broken variants below change one thing."""

    name = "delegating"
    description = "model.fit on the source's arrays"

    def fit(self, model, plan):
        validation = None if plan.validation is None else plan.validation.arrays()
        return model.fit(**plan.fit_kwargs(plan.train.arrays(), validation))


class IgnoresCallbacks(Delegating):
    name = "deaf"

    def fit(self, model, plan):
        return super().fit(model, replace(plan, callbacks=[]))


class IgnoresInitialEpoch(Delegating):
    name = "restarts"

    def fit(self, model, plan):
        return super().fit(model, replace(plan, initial_epoch=0))


class ReturnsDict(Delegating):
    name = "dicty"

    def fit(self, model, plan):
        return super().fit(model, plan).history


class ReturnsACopy(Delegating):
    name = "copies"

    def fit(self, model, plan):
        return copy.copy(super().fit(model, plan))


class HalfBatches(Delegating):
    name = "halves"

    def fit(self, model, plan):
        return super().fit(model, replace(plan, batch_size=plan.batch_size // 2))


class LeavesAThread(Delegating):
    name = "leaky"
    stop = threading.Event()

    def fit(self, model, plan):
        threading.Thread(target=self.stop.wait, name="leaky-worker", daemon=True).start()
        return super().fit(model, plan)


class TakesAnyOption(Delegating):
    name = "lax"

    def __init__(self, **options):  # never calls super().__init__: typos pass silently
        self.options = options


@kfitx.hookimpl
def kfitx_strategies():  # this module is the plugin of the strategies above
    return [Delegating, IgnoresCallbacks, IgnoresInitialEpoch, ReturnsDict, ReturnsACopy, HalfBatches,
            LeavesAThread, TakesAnyOption, OneHot, RaisesInFit, SwallowsErrors]


@pytest.mark.parametrize("name", ["loop", pytest.param("memory", marks=pytest.mark.slow),
                                  pytest.param("generator", marks=pytest.mark.slow),
                                  pytest.param("auto", marks=pytest.mark.slow)])
def test_builtin_strategies_pass_every_rule(registry, name):
    report = check_strategy(name)
    assert report.ok and report.passed == list(RULES), str(report)
    assert report.tolerance == kfitx.testing.DEFAULT_TOLERANCE
    assert "built into kfitx" in report.results[0].detail


def test_a_correct_third_party_strategy_passes_and_reports_what_it_checked():
    seen = []
    report = check_strategy(Delegating, skip=["tuner-trial"], on_result=seen.append)
    assert report.ok and "tuner-trial" not in report.checked
    assert [r.rule for r in seen] == report.checked == [r for r in RULES if r != "tuner-trial"]
    assert "registration" in report.passed and "test_testing" in report.results[0].detail
    text = str(report)
    assert "callback-order   PASSED" in text and "12 passed, 0 failed, 0 skipped" in text


def test_ignoring_callbacks_breaks_callback_order_with_a_message_naming_the_rule():
    with pytest.raises(ConformanceError) as info:
        check_strategy(IgnoresCallbacks, rules=["history", "callback-order", "early-stopping"])
    text = str(info.value)
    assert text.startswith("Strategy 'deaf' breaks 2 rule(s) of the fit contract: 'callback-order', "
                           "'early-stopping'.")
    assert "breaks rule 'callback-order'" in text
    assert "Received: no callback was called at all." in text
    assert "How to fix: Drive one keras.callbacks.CallbackList" in text
    report = info.value.report
    assert report.passed == ["history"] and report.failed == ["callback-order", "early-stopping"]
    assert isinstance(info.value, AssertionError)  # pytest shows it as a failed assertion


def test_each_broken_rule_is_named():
    cases = [
        (IgnoresInitialEpoch, ["epochs", "initial-epoch"], ["initial-epoch"], "History.epoch [0, 1, 2]"),
        (ReturnsDict, ["history"], ["history"], "Received: dict"),
        (ReturnsACopy, ["history"], ["history"], "Received: a History that is not model.history"),
        (HalfBatches, ["callback-order", "same-weights"], ["callback-order", "same-weights"],
         "largest difference of"),
        (TakesAnyOption, ["options"], ["options"], "it was accepted silently"),
    ]
    for strategy, rules, broken, detail in cases:
        report = check_strategy(strategy, rules=rules, raise_on_failure=False)
        assert report.failed == broken, (strategy.name, str(report))
        text = "\n".join(str(r.error) for r in report.results if r.error)
        assert detail in text, text
        for rule in broken:
            assert f"breaks rule '{rule}'" in text


def test_threads_left_behind_are_reported():
    try:
        report = check_strategy(LeavesAThread, rules=["no-leftovers"], raise_on_failure=False)
    finally:
        LeavesAThread.stop.set()
    assert report.failed == ["no-leftovers"]
    assert "leaky-worker" in str(report.results[0].error)


def test_pluggy_validation_and_a_hook_not_returning_the_class_are_registration_failures():
    def bad_signature(strategy, nonsense):
        pass

    bad = types.SimpleNamespace(kfitx_fit=kfitx.hookimpl(bad_signature))
    report = check_strategy(Delegating, rules=["registration"], plugin=bad, raise_on_failure=False)
    assert report.failed == ["registration"]
    assert "pluggy's validation" in str(report.results[0].error)

    other = types.SimpleNamespace(kfitx_strategies=kfitx.hookimpl(lambda: [HalfBatches]))
    report = check_strategy(Delegating, rules=["registration"], plugin=other, raise_on_failure=False)
    assert "to return [Delegating, ...]" in str(report.results[0].error)
    assert "the strategies ['halves']" in str(report.results[0].error)


def test_tolerance_none_skips_same_weights_and_a_stated_tolerance_is_used():
    report = check_strategy(HalfBatches, rules=["same-weights"], tolerance=None)
    assert report.skipped == ["same-weights"] and report.tolerance is None and report.ok
    assert check_strategy(HalfBatches, rules=["same-weights"], tolerance=10.0).passed == ["same-weights"]

    class Claims(HalfBatches):
        weight_tolerance = None

    assert check_strategy(Claims, rules=["same-weights"]).skipped == ["same-weights"]


def test_unknown_rule_names_are_an_option_error():
    with pytest.raises(kfitx.OptionError, match=r"Expected rule names among: registration.*Received: calback"):
        check_strategy(Delegating, rules=["calback"])


class TestDelegatingConforms(StrategyConformance):
    """The pytest form: one test per rule (a subset here, to keep the suite quick)."""

    strategy = Delegating

    test_tuner_trial = None  # covered above for the built-ins
    test_early_stopping = test_stop_training = test_no_leftovers = None


class TestDeafFailsTheRightTest(StrategyConformance):
    strategy = IgnoresCallbacks
    test_tuner_trial = test_early_stopping = test_stop_training = test_no_leftovers = None
    test_initial_epoch = test_validation_data = test_same_weights = test_epochs = test_history = None
    test_backup_and_restore = None

    def test_callback_order(self):
        with pytest.raises(ConformanceError, match="breaks rule 'callback-order'"):
            super().test_callback_order()


# -- a strategy that needs data and a model of its own ----------------------------------------------


class OneHot(kfitx.Strategy):
    """model.fit on one-hot labels only (as a mixup would need): the kit's integer labels are refused."""

    name = "onehot"
    description = "model.fit on one-hot labels"
    defaults = {"smoothing": 0.0}

    def supports(self, source):
        if not source.in_memory or getattr(source.y, "ndim", 0) != 2:
            return "onehot trains on one-hot labels of shape (samples, classes); pass keras.utils.to_categorical(y)."
        return None

    def fit(self, model, plan):
        x, y, *weights = plan.train.arrays()
        eps = self.options["smoothing"]
        validation = None if plan.validation is None else plan.validation.arrays()
        with plan.grouped(model):
            return model.fit(**plan.fit_kwargs((x, y * (1 - eps) + eps / y.shape[1], *weights), validation))


class RaisesInFit(Delegating):
    name = "raising"

    def fit(self, model, plan):
        logs = {}
        return logs["accuracy"]


def one_hot_source(x, y):
    import keras

    return kfitx.data.arrays(x, keras.utils.to_categorical(y, 3))


def categorical_model(seed):
    import keras

    model = kfitx.testing.tiny_model(seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_a_strategy_needing_one_hot_labels_passes_with_make_source_and_build_model():
    report = check_strategy(OneHot, make_source=one_hot_source, build_model=categorical_model, skip=["tuner-trial"])
    assert report.ok and report.passed == [r for r in RULES if r != "tuner-trial"], str(report)


def test_without_them_each_failure_is_one_plain_sentence():
    report = check_strategy(OneHot, rules=["options", "history", "initial-epoch"], raise_on_failure=False)
    assert report.failed == ["options", "history", "initial-epoch"]
    for result in report.results:
        text = str(result.error)
        assert text.count("Received:") == 1 and ".." not in text and "\n" not in text, text
    assert ("Received: the reason 'onehot trains on one-hot labels of shape (samples, classes); pass "
            "keras.utils.to_categorical(y).'. How to fix: Pass make_source=") in str(report.results[0].error)
    assert "received arrays" in str(report.results[1].error)  # kfitx.fit's refusal, quoted without its label


def test_a_reference_run_that_cannot_train_on_make_sources_data_is_blamed_on_the_setup():
    report = check_strategy(OneHot, make_source=one_hot_source, rules=["initial-epoch"], raise_on_failure=False)
    text = str(report.results[0].error)
    assert "expected the reference run (the same fit through 'memory', which is model.fit" in text
    assert "The kit's setup failed, not the strategy" in text and "calls where model.fit makes" not in text


def test_a_raising_strategy_is_named_with_its_line_in_every_rule_and_in_the_tuner_trial():
    report = check_strategy(RaisesInFit, rules=["history", "tuner-trial"], raise_on_failure=False)
    assert report.failed == ["history", "tuner-trial"]
    for result in report.results:
        text = str(result.error)
        assert "Received: KeyError: 'accuracy' (raised at test_testing.py, line " in text, text
        assert ", in fit)." in text and "^^^" not in text and text.count("Received:") == 1


class SwallowsErrors(Delegating):
    name = "swallows"

    def fit(self, model, plan):
        try:
            return super().fit(model, plan)
        except Exception:  # the mistake: a killed fit looks finished, and nothing resumes
            return model.history


def test_backup_restore_breaks_for_a_strategy_that_hides_an_interrupted_fit():
    report = check_strategy(SwallowsErrors, rules=["backup-restore"], raise_on_failure=False)
    assert report.failed == ["backup-restore"]
    assert "expected a callback's exception in on_epoch_end(1) to end fit()" in str(report.results[0].error)
    assert "Received: no exception." in str(report.results[0].error)
    assert check_strategy(Delegating, rules=["backup-restore"]).passed == ["backup-restore"]


class TestOneHotConforms(StrategyConformance):
    """StrategyConformance takes make_source and build_model too."""

    strategy = OneHot
    make_source = staticmethod(one_hot_source)
    build_model = staticmethod(categorical_model)
    test_tuner_trial = test_early_stopping = test_stop_training = test_no_leftovers = test_epochs = None
