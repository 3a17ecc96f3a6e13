"""What a conformance check found: one :class:`RuleResult` per rule, in a :class:`ConformanceReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from kfitx.errors import ConformanceError

__all__ = ["ConformanceReport", "RuleResult"]


@dataclass
class RuleResult:
    """One rule's outcome: ``status`` is ``"passed"``, ``"failed"`` or ``"skipped"``."""

    rule: str
    status: str
    detail: str
    seconds: float = 0.0
    error: ConformanceError | None = None


@dataclass
class ConformanceReport:
    """What :func:`check_strategy` checked and found."""

    strategy: str
    tolerance: float | None
    results: list[RuleResult] = field(default_factory=list)

    def _with(self, status: str) -> list[str]:
        return [r.rule for r in self.results if r.status == status]

    @property
    def checked(self) -> list[str]:
        return [r.rule for r in self.results]

    @property
    def passed(self) -> list[str]:
        return self._with("passed")

    @property
    def failed(self) -> list[str]:
        return self._with("failed")

    @property
    def skipped(self) -> list[str]:
        return self._with("skipped")

    @property
    def ok(self) -> bool:
        """No rule failed (skipped rules do not count against it)."""
        return not self.failed

    def __str__(self) -> str:
        width = max((len(r.rule) for r in self.results), default=4)
        tol = "no claim" if self.tolerance is None else f"{self.tolerance:g}"
        lines = [f"kfitx conformance of strategy '{self.strategy}' (weight tolerance: {tol})"]
        for r in self.results:
            detail = r.detail.splitlines()[0] if r.detail else ""
            lines.append(f"  {r.rule.ljust(width)}  {r.status.upper():7}  {detail}")
        lines.append(f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped")
        return "\n".join(lines)
