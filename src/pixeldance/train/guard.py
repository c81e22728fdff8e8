"""What a run counts as it goes, and when it must stop: too many non-finite steps in a row, or
no usable sample at all. A run that never trained a step saves nothing, and says why."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class TrainingStopped(RuntimeError):
    """The run stopped: non-finite losses in a row, or nothing it could learn from."""


@dataclass
class Counters:
    trained_steps: int = 0  # optimizer steps that updated the weights
    nonfinite: int = 0  # steps skipped for a non-finite loss (or no usable sample)
    nonfinite_in_a_row: int = 0
    bad_files: int = 0  # files that could not give a sample (each substituted)
    empty_batches: int = 0  # micro-batches in which no sample could be loaded
    too_short: int = 0  # of the bad files: clips shorter than their bucket's frames

    def count_bad(self, bad: list[tuple[str, str]]) -> None:
        """A micro-batch's skipped files, ``(path, reason)``."""
        self.bad_files += len(bad)
        self.too_short += sum(reason == "ClipTooShort" for _, reason in bad)

    @classmethod
    def restore(cls, saved: dict, step: int) -> Counters:
        """From a checkpoint's counters; checkpoints written before ``trained_steps`` was kept
        count every step that was not skipped."""
        known = {k: v for k, v in saved.items() if k in cls.__dataclass_fields__}
        counters = cls(**known)
        if "trained_steps" not in saved:
            counters.trained_steps = step - counters.nonfinite
        return counters

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items() if k != "nonfinite_in_a_row")

    def trained(self) -> None:
        self.trained_steps += 1
        self.nonfinite_in_a_row = 0

    def skipped(self) -> None:
        self.nonfinite += 1
        self.nonfinite_in_a_row += 1

    def nothing_learnt(self, data: str | None, lr: float) -> str:
        """Why a run that has not trained one step cannot go on (nothing was saved)."""
        where = f" {data}" if data else " MANIFEST"
        if self.too_short and self.too_short == self.bad_files:
            return (
                f"no usable training sample: the clips are too short for the bucket's frames "
                f"({self.too_short} clips skipped as too short in {self.nonfinite} steps); "
                "nothing was saved. Lower the frames of data.buckets (or the stage's buckets) "
                "or train on longer clips"
            )
        if self.bad_files or self.empty_batches:
            return (
                f"no usable training sample: {self.bad_files} bad files and "
                f"{self.empty_batches} empty batches in {self.nonfinite} steps; nothing was "
                f"saved. Run `pixeldance check-data{where}` to see which files are bad"
            )
        return (
            f"every one of the {self.nonfinite} steps so far had a non-finite loss; nothing "
            f"was saved. Lower optim.lr (now {lr:g}) or check the data"
        )
