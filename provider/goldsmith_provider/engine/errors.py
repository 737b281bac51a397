"""One exception hierarchy for everything goldsmith raises on purpose."""

from __future__ import annotations

from dataclasses import dataclass


class GoldsmithError(Exception):
    """Base of every error goldsmith raises deliberately; ``hint`` says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\nhint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class Problem:
    """One validation failure: where (a property path such as ``provisioners[2].script``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ValidationError(GoldsmithError):
    """Every problem found in a spec, reported together, before any side effect."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid image spec:\n" + "\n".join(f"  - {p}" for p in self.problems))


class CommandError(GoldsmithError):
    """A command (local or in the guest) failed; carries its exit status and last output lines."""

    def __init__(self, what: str, status: int | None, tail: str, *, hint: str | None = None) -> None:
        self.what = what
        self.status = status
        self.tail = tail
        detail = f"exit status {status}" if status is not None else "no exit status"
        message = f"{what} failed ({detail})"
        if tail:
            message += "\n--- last output ---\n" + tail
        super().__init__(message, hint=hint)


class StepError(GoldsmithError):
    """A build step failed; names the step and keeps the cause."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"step {step!r} failed: {cause}")


class CleanupError(GoldsmithError):
    """One or more cleanups failed; lists the resources that may be left behind."""

    def __init__(self, failures: list[tuple[str, BaseException]], leftovers: list[str]) -> None:
        self.failures = failures
        self.leftovers = leftovers
        lines = [f"  - cleanup of {name!r} failed: {exc}" for name, exc in failures]
        if leftovers:
            lines.append("  leftover resources: " + ", ".join(leftovers))
        super().__init__("cleanup incomplete:\n" + "\n".join(lines), hint="run `goldsmith gc` to reap them")
