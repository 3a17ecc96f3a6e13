import pytest

from kfitx import errors


@pytest.mark.parametrize(
    "cls, stdlib",
    [
        (errors.StrategyNotFoundError, LookupError),
        (errors.StrategyConflictError, LookupError),
        (errors.OptionError, TypeError),
        (errors.ModelError, ValueError),
        (errors.DataError, ValueError),
        (errors.UnsupportedDataError, ValueError),
        (errors.MemoryBudgetError, MemoryError),
        (errors.MemoryBudgetError, errors.UnsupportedDataError),
        (errors.StrategyFitError, RuntimeError),
        (errors.PluginError, TypeError),
    ],
)
def test_each_error_is_also_its_stdlib_type(cls, stdlib):
    assert issubclass(cls, errors.KfitxError)
    assert issubclass(cls, stdlib)


def test_message_has_expected_received_and_todo():
    text = errors.message("Expected a thing.", "'other'", "Do this.")
    assert text == "Expected a thing. Received: 'other'. Do this."


def test_message_ends_a_received_sentence_once():
    from kfitx.errors import message

    assert message("Expected a", "b.", "Do c.") == "Expected a. Received: b. Do c."
    assert message("Expected a.", "b", None) == "Expected a. Received: b."


def test_describe_error_names_the_line_in_the_given_files_and_keeps_one_line():
    from kfitx.errors import DataError, describe_error

    def plugin_code():
        raise KeyError("accuracy")

    try:
        plugin_code()
    except KeyError as err:
        text = describe_error(err, [__file__])
    assert text.startswith("KeyError: 'accuracy' (raised at test_errors.py, line ") and text.endswith(
        ", in plugin_code)")
    long = ValueError("first line\n" + "x " * 400 + "\n      ^^^^^^^^")
    assert "\n" not in describe_error(long, limit=50) and describe_error(long, limit=50).startswith(
        "ValueError: first line x x")
    assert describe_error(DataError("kfitx's own words")) == "DataError: kfitx's own words"
