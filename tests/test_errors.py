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
    ],
)
def test_each_error_is_also_its_stdlib_type(cls, stdlib):
    assert issubclass(cls, errors.KfitxError)
    assert issubclass(cls, stdlib)


def test_message_has_expected_received_and_todo():
    text = errors.message("Expected a thing.", "'other'", "Do this.")
    assert text == "Expected a thing. Received: 'other'. Do this."
