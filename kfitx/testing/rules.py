"""The rules of the fit contract.

Separation of concerns:

* :mod:`kfitx.testing.runs` -- the training runs (:class:`Checker`), each made
  once and shared by the rules that read it;
* each rule is one function that reads runs and returns a detail line, raises
  :class:`Broken` (what was expected, what was received, how to fix it) or
  :class:`Skip` (why it does not apply); :data:`RULES` lists them in the order
  they run, and :func:`check_one` turns the outcome into a :class:`RuleResult`
  whose error is a :class:`kfitx.ConformanceError` naming the rule, in one
  sentence (an exception received is its type, message and the line of the
  strategy's module that raised it: :func:`kfitx.errors.describe_error`);
* :mod:`kfitx.testing.plugin_rules` -- the rules about the plugin rather than its
  training (``registration``, ``options``, ``tuner-trial``).

Batch callbacks may fire once per group of steps (Keras's
``steps_per_execution``) only when no callback acts per batch: the
``callback-order`` rule therefore runs with a callback that records every batch,
and the ``initial-epoch`` rule compares only epoch-level hooks, with no
per-batch callback present, so a strategy may group there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import keras
import numpy as np

from kfitx.errors import ConformanceError, describe_error, message
from kfitx.testing.plugin_rules import rule_options, rule_registration, rule_tuner_trial
from kfitx.testing.report import RuleResult
from kfitx.testing.runs import Broken, Checker, Skip
from kfitx.testing.spy import max_weight_difference

if TYPE_CHECKING:
    from kfitx.testing.spy import Call

__all__ = ["RULES", "Broken", "Checker", "Skip", "check_one"]

# -- the rules ----------------------------------------------------------------


def _calls_diff(expected: list[Call], received: list[Call]) -> str:
    if not received:
        return "no callback was called at all"
    i = next((i for i, (a, b) in enumerate(zip(expected, received)) if a != b), min(len(expected), len(received)))
    show = lambda calls: ", ".join(f"{c[0]}({', '.join(map(str, c[1:-1]))}){list(c[-1]) if c[-1] else ''}"
                                   for c in calls[max(0, i - 1):i + 2]) or "(nothing)"
    return (f"{len(received)} calls where model.fit makes {len(expected)}; the first difference is at call "
            f"#{i}: model.fit does [{show(expected)}], the strategy did [{show(received)}]")


_CALLBACK_FIX = (
    "Drive one keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, "
    "model=model, epochs=..., steps=...) in model.fit's order: on_train_begin; per epoch "
    "model.reset_metrics(), on_epoch_begin, on_train_batch_begin/end around every batch, validation "
    "through model.evaluate(..., callbacks=that list), on_epoch_end with the epoch's logs; then "
    "on_train_end. Or delegate to model.fit(..., callbacks=callbacks). Batch hooks may fire once per "
    "group of steps only when no callback acts per batch."
)


def _rule_history(c: Checker) -> str:
    ours = c.run("candidate-full").ok("2 epochs with validation_data")
    history = ours.history
    fix = "Return what model.fit returned, or the History your CallbackList made (model.history)."
    if not isinstance(history, keras.callbacks.History):
        raise Broken("fit() to return a keras.callbacks.History", type(history).__name__, fix)
    on_model = getattr(ours.model, "history", None)
    returned_the_models = history is on_model
    if not returned_the_models:
        raise Broken("fit() to return the model's History (model.history), as model.fit does",
                     f"a History that is not model.history ({type(on_model).__name__})", fix)
    keys, want = sorted(history.history), sorted(c.run("reference-full").ok("2 epochs").history.history)
    if keys != want:
        raise Broken(f"the History keys model.fit gives: {want}", keys,
                     "Use the model's metric names (model.get_metrics_result() for training, 'val_' + name "
                     "for model.evaluate's results) and nothing else in the epoch logs.")
    bad = {k: v for k, v in history.history.items()
           if len(v) != 2 or not all(np.isfinite(np.asarray(v, dtype=float)))}
    if bad:
        raise Broken("one finite number per epoch under each key (2 epochs)", bad,
                     "Call on_epoch_end exactly once per epoch with that epoch's logs.")
    return f"keys {keys}; the model's History"


def _rule_callback_order(c: Checker) -> str:
    ours = c.run("candidate-full")  # the candidate's run first: the order kfitx has always run them in
    ref = c.run("reference-full").ok("2 epochs with validation_data")
    ours.ok("2 epochs with validation_data")
    if ours.calls != ref.calls:
        raise Broken("every callback hook in model.fit's order, with the same steps and log keys "
                     "(a callback acting per batch was present, so no grouping)",
                     _calls_diff(ref.calls, ours.calls), _CALLBACK_FIX)
    return f"{len(ours.calls)} calls as model.fit makes them"


def _rule_epochs(c: Checker) -> str:
    ours = c.run("candidate-full").ok("epochs=2")
    epochs = [call[1] for call in ours.calls if call[0] == "on_epoch_begin"]
    history_epochs = list(getattr(ours.history, "epoch", []))
    if epochs != [0, 1] or history_epochs != [0, 1]:
        raise Broken("epochs=2 to train epochs [0, 1]",
                     f"on_epoch_begin for {epochs}, History.epoch {history_epochs}",
                     "Loop `for epoch in range(initial_epoch, epochs)` over the fit argument `epochs`.")
    return "epochs=2 trains epochs [0, 1]"


def _rule_initial_epoch(c: Checker) -> str:
    ours = c.run("candidate-resume")
    ref = c.run("reference-resume").ok("epochs=3, initial_epoch=1")
    ours.ok("epochs=3, initial_epoch=1")
    fix = ("Start at `initial_epoch` (Hyperband and BackupAndRestore set it): "
           "`for epoch in range(initial_epoch, epochs)`, passing it on to model.fit if you delegate.")
    if list(getattr(ours.history, "epoch", [])) != [1, 2]:
        raise Broken("epochs=3, initial_epoch=1 to train epochs [1, 2]",
                     f"History.epoch {list(getattr(ours.history, 'epoch', []))}", fix)
    if ours.calls != ref.calls:
        raise Broken("the epoch-level hooks in model.fit's order (no callback acting per batch, so "
                     "grouping was allowed)", _calls_diff(ref.calls, ours.calls), fix)
    if c.tolerance is None:
        return "epochs [1, 2]; epoch-level hooks as model.fit"
    diff = max_weight_difference(ours.model, ref.model)
    if not diff <= c.tolerance:
        raise Broken(f"epochs [1, 2] to end with the weights 'memory' ends with there, to within {c.tolerance:g} "
                     "(two epochs trained, as from epoch 0)", f"a largest difference of {diff:.3g}", fix)
    return f"epochs [1, 2]; epoch-level hooks as model.fit; weights as memory's to {diff:.2g}"


def _rule_validation_data(c: Checker) -> str:
    ours = c.run("candidate-full").ok("validation_data=(x_val, y_val)")
    history = getattr(ours.history, "history", {})
    fix = ("Validate after each epoch's training with model.evaluate(validation, callbacks=<the fit's "
           "CallbackList>, return_dict=True) and add its results as 'val_' + name to the epoch logs, "
           "or pass validation_data on to model.fit.")
    if "val_loss" not in history or len(history["val_loss"]) != 2:
        raise Broken("'val_loss' in the History once per epoch", sorted(history), fix)
    validation = c.source("validation")
    data = validation.arrays() if validation.in_memory else (validation.passthrough(),)
    if data[0] is None:
        return f"val_loss {history['val_loss'][-1]:.4f} every epoch (a stream of its own: not evaluated again)"
    evaluated = ours.model.evaluate(*data, batch_size=32 if validation.in_memory else None, verbose=0,
                                    return_dict=True)
    if not np.isclose(history["val_loss"][-1], evaluated["loss"], rtol=1e-4, atol=1e-6):
        raise Broken(f"the last val_loss to be the trained model's loss on validation_data, "
                     f"{evaluated['loss']:.6f}", f"{history['val_loss'][-1]:.6f}", fix)
    return f"val_loss {history['val_loss'][-1]:.4f} = model.evaluate on validation_data"


def _rule_early_stopping(c: Checker) -> str:
    ours = c.run("early").ok("EarlyStopping")
    epochs = list(getattr(ours.history, "epoch", []))
    last = ours.calls[-1][0] if ours.calls else None
    if epochs != [0, 1] or last != "on_train_end":
        raise Broken("EarlyStopping(monitor='loss', min_delta=10, patience=1) to stop epochs=10 after "
                     "epoch 1, as in model.fit, then on_train_end",
                     f"History.epoch {epochs}, last hook {last}",
                     "After on_epoch_end, `if model.stop_training: break` (and reset "
                     "model.stop_training = False before on_train_begin).")
    return "stopped after 2 of 10 epochs"


def _rule_stop_training(c: Checker) -> str:
    ours = c.run("stop").ok("model.stop_training set in on_train_batch_end(1)")
    batches = [call[1] for call in ours.calls if call[0] == "on_train_batch_begin"]
    epochs = [call[1] for call in ours.calls if call[0] == "on_epoch_begin"]
    history_epochs = list(getattr(ours.history, "epoch", []))
    fix = "After on_train_batch_end, `if model.stop_training: break`; after on_epoch_end too."
    if batches != [0, 1] or epochs != [0] or history_epochs != [0]:
        raise Broken("model.stop_training set after batch 1 to end the epoch and the fit there",
                     f"epochs {epochs}, training batches {batches}, History.epoch {history_epochs}", fix)
    if c.tolerance is None:  # no claim to make memory's updates: one optimizer step per batch is not owed
        return "the fit ended after batch 1 of epoch 0"
    steps = int(keras.ops.convert_to_numpy(ours.model.optimizer.iterations))
    if steps != 2:
        raise Broken("2 optimizer steps (batches 0 and 1) when model.stop_training is set after batch 1, "
                     "as in model.fit", f"{steps} steps (model.optimizer.iterations)", fix)
    return "the fit ended after batch 1 of epoch 0, after 2 optimizer steps"


def _rule_backup_and_restore(c: Checker) -> str:
    ours = c.run("candidate-backup")
    ref = c.run("reference-backup").ok("BackupAndRestore, resumed after an interruption")
    fix = ("Let callbacks raise through fit (catch nothing), pass plan.callbacks on to model.fit, and start at "
           "plan.initial_epoch; kfitx.fit_loop reads where BackupAndRestore resumes.")
    if not ours.interrupted:
        raise Broken("a callback's exception in on_epoch_end(1) to end fit() (the kit's stand-in for a process "
                     "killed mid-fit)", "no exception" if ours.first_error is None
                     else describe_error(ours.first_error, c.files), fix)
    ours.ok("the same fit again, with the backup")
    epochs = list(getattr(ours.history, "epoch", []))
    want = list(ref.history.epoch)
    if epochs != want or ours.calls != ref.calls:
        raise Broken(f"the fit started again with the same BackupAndRestore to resume at epoch {want[0]} and train "
                     f"epochs {want}, as model.fit does", f"History.epoch {epochs}; "
                     + _calls_diff(ref.calls, ours.calls), fix)
    if c.tolerance is None:
        return f"resumed at epoch {want[0]} from the backup"
    diff = max_weight_difference(ours.model, ref.model)
    if not diff <= c.tolerance:
        raise Broken(f"the resumed fit to end with the weights 'memory' ends with, to within {c.tolerance:g} "
                     "(the backup's weights, then the remaining epoch)", f"a largest difference of {diff:.3g}",
                     "Restore nothing yourself: BackupAndRestore loads the weights in on_train_begin. " + fix)
    return f"resumed at epoch {want[0]} from the backup; weights as memory's to {diff:.2g}"


def _rule_same_weights(c: Checker) -> str:
    if c.tolerance is None:
        raise Skip("the strategy makes no claim to train like 'memory' (tolerance=None)")
    ours = c.run("candidate-full")
    ref = c.run("reference-full").ok("2 epochs, shuffle=False")
    ours.ok("2 epochs, shuffle=False")
    diff = max_weight_difference(ours.model, ref.model)
    if not diff <= c.tolerance:
        raise Broken(f"the weights 'memory' ends with (same data, seed, shuffle=False, no augmentation) "
                     f"to within {c.tolerance:g}", f"a largest difference of {diff:.3g}",
                     "Train on the same batches in the same order with the model's own loss and optimizer, "
                     "one optimizer step per batch; or state your tolerance: check_strategy(..., tolerance=X) "
                     "or the class attribute `weight_tolerance = X` (None: no claim).")
    return f"largest weight difference {diff:.2g} <= {c.tolerance:g}"


def _rule_no_leftovers(c: Checker) -> str:
    for key in ("candidate-full", "candidate-resume", "candidate-backup", "early", "stop"):
        c.run(key)
    deadline = time.monotonic() + 2.0  # a worker told to stop may take a moment to go
    while True:
        threads = [t for t in threading.enumerate() if t not in c.threads_before and t.is_alive()]
        children = c._children() - c.children_before
        if not (threads or children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if threads or children:
        raise Broken("no thread or process left behind after fit() returns",
                     f"threads {[t.name for t in threads]}, child processes {sorted(children)}",
                     "Join your worker threads and processes in a `finally:` block before returning.")
    return "no thread or process left behind"


#: The rules, in the order they run: name -> (what it checks, function).
RULES: dict[str, tuple[str, Callable[[Checker], str]]] = {
    "registration": ("name, description, defaults; its plugin's hook passes pluggy's validation and returns "
                     "the class", rule_registration),
    "options": ("constructs with its defaults; unknown options raise OptionError; hyperparameters(hp) "
                "returns its own options; it supports the kit's data", rule_options),
    "history": ("returns the model's keras.callbacks.History (model.history) with model.fit's keys, one finite "
                "value per epoch", _rule_history),
    "callback-order": ("fires every callback hook in model.fit's order, with its steps and log keys",
                       _rule_callback_order),
    "epochs": ("trains `epochs` epochs", _rule_epochs),
    "initial-epoch": ("starts at `initial_epoch`; epoch-level hooks as model.fit; then memory's weights, to the "
                      "stated tolerance", _rule_initial_epoch),
    "validation-data": ("validates on validation_data every epoch into val_* keys", _rule_validation_data),
    "early-stopping": ("EarlyStopping stops it when model.fit would stop", _rule_early_stopping),
    "stop-training": ("model.stop_training set in a batch ends the fit there (with a tolerance stated: after "
                      "that batch's optimizer step)", _rule_stop_training),
    "backup-restore": ("a fit interrupted after epoch 1 and started again with the same BackupAndRestore "
                           "resumes at epoch 2, as model.fit does", _rule_backup_and_restore),
    "same-weights": ("same data, seed, shuffle=False: the weights of 'memory', to the stated tolerance",
                     _rule_same_weights),
    "no-leftovers": ("no thread or process left behind", _rule_no_leftovers),
    "tuner-trial": ("a keras-tuner RandomSearch trial through StrategyHyperModel completes", rule_tuner_trial),
}


def _failure(strategy: str, rule: str, broken: Broken) -> ConformanceError:
    # one "Received:" per sentence: an error message quoted as what was received keeps its words, not its label
    received = str(broken.received).replace("Received: ", "received ")
    text = message(f"Strategy '{strategy}' breaks rule '{rule}': expected {broken.expected}",
                   received, "How to fix: " + broken.fix)
    return ConformanceError(text)


def check_one(checker: Checker, rule: str) -> RuleResult:
    start = time.perf_counter()
    try:
        detail, status, error = RULES[rule][1](checker), "passed", None
    except Skip as skip:
        detail, status, error = str(skip), "skipped", None
    except Broken as broken:
        error = _failure(checker.name, rule, broken)
        detail, status = str(error), "failed"
    except Exception as err:  # the strategy raised where the rule did not expect it
        error = _failure(checker.name, rule, Broken("no exception", describe_error(err, checker.files),
                                                    "Fix the line it names; then run the rule again."))
        detail, status = str(error), "failed"
    return RuleResult(rule, status, detail, time.perf_counter() - start, error)
