"""``tf.data.Dataset`` sources: :class:`DatasetSource`, batches as the dataset yields them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kfitx.data.base import InputForm, Reading, Source, require_targets
from kfitx.errors import DataError, message
from kfitx.runtime.lazy import is_instance as _is_instance

if TYPE_CHECKING:
    from kfitx.data.epoch_iterator import EpochIterator

__all__ = ["DatasetSource"]


@dataclass(frozen=True, eq=False)
class DatasetSource(Source):
    """A ``tf.data.Dataset`` yielding batches (kfitx neither batches nor shuffles it, as Keras)."""

    kind: ClassVar[str] = "tf.data"
    dataset: Any

    @property
    def form(self) -> InputForm:
        return InputForm.TF_DATA

    def __post_init__(self) -> None:
        if not _is_instance(self.dataset, "tensorflow", "data.Dataset"):
            raise DataError(message("Expected a tf.data.Dataset", type(self.dataset).__name__))

    def num_batches(self, batch_size: int) -> int | None:
        cardinality = int(self.dataset.cardinality())
        return cardinality if cardinality >= 0 else None

    def _check(self, reading: Reading) -> None:
        spec = self.dataset.element_spec
        require_targets(reading, isinstance(spec, tuple) and len(spec) >= 2, self.kind, "its element_spec",
                        str(spec))

    def passthrough(self) -> Any:
        return self.dataset

    def as_dataset(self, reading: Reading) -> Any:
        # One pass per iteration, never repeated: model.fit's epoch rules (a pass carried into the next
        # epoch when steps_per_epoch is shorter, "ran out of data" when longer) apply to it as they are.
        from kfitx.data.weights import weighted

        self._check(reading)
        return weighted(self.dataset, reading.class_weight)

    def feed(self, reading: Reading, *, group: int = 1, pull: bool = False) -> EpochIterator:
        from kfitx.data.feed import DatasetFeed

        # As model.fit: with steps_per_epoch one iterator runs across epochs, a new pass
        # starting when the dataset ends (the epoch iterator does that, not repeat()).
        return DatasetFeed(self.as_dataset(reading), reading, group, pull)
