"""A stand-in for questionary, the terminal wizard's prompt layer, answering from a script."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Attempts:
    """Answers typed one after another until the wizard's validation accepts one."""

    values: tuple[Any, ...]


@dataclass
class _Choice:
    title: str
    value: Any = None
    checked: bool = False
    description: str | None = None
    disabled: str | None = None


@dataclass
class _Question:
    answer: Callable[[], Any]

    def ask(self) -> Any:
        return self.answer()


@dataclass
class ScriptedPrompts:
    """questionary's interface, answering from a script keyed by the question's title.

    Unscripted questions take their default, as pressing Enter does. Every answer goes
    through the wizard's own ``validate`` callback and must be an enabled choice.
    """

    script: Mapping[str, Any]
    asked: list[str] = field(default_factory=list)
    refused: list[tuple[str, Any, str]] = field(default_factory=list)
    offered: dict[str, list[_Choice]] = field(default_factory=dict)
    Choice = _Choice

    def _scripted(self, message: str, default: Any) -> Any:
        title = re.sub(r" \(the .*\)$", "", message.rstrip(":"))
        self.asked.append(title)
        return self.script.get(title, self.script.get(message, default))

    def text(self, message: str, default: str = "", validate: Any = None, **_: Any) -> _Question:
        def answer() -> Any:
            value = self._scripted(message, default)
            attempts = value.values if isinstance(value, Attempts) else (value,)
            for attempt in attempts:
                text = "" if attempt is None else str(attempt)
                verdict = True if validate is None else validate(text)
                if verdict is True:
                    return text
                self.refused.append((message, attempt, str(verdict)))
            raise AssertionError(f"every answer to {message!r} was refused: {self.refused}")

        return _Question(answer)

    password = text

    def select(self, message: str, choices: list[_Choice], default: Any = None) -> _Question:
        self.offered[message] = choices

        def answer() -> Any:
            value = self._scripted(message, default)
            enabled = [c.value for c in choices if not c.disabled]
            assert value in enabled, (message, value, enabled)
            return value

        return _Question(answer)

    def checkbox(
        self, message: str, choices: list[_Choice], validate: Any = None, **_: Any
    ) -> _Question:
        self.offered[message] = choices

        def answer() -> Any:
            ticked = [c.value for c in choices if c.checked]
            value = list(self._scripted(message, ticked))
            enabled = {c.value for c in choices if not c.disabled}
            assert set(value) <= enabled, (message, value)
            assert validate is None or validate(value) is True
            return [c.value for c in choices if c.value in value]  # in list order

        return _Question(answer)

    def confirm(self, message: str, default: bool = False) -> _Question:
        return _Question(lambda: self._scripted(message, default))


__all__ = ["Attempts", "ScriptedPrompts"]
