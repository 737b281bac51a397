"""The secret values one build needs, and the secret files it must remove before the snapshot.

A secret value is either given (a Pulumi secret, arriving as plain text in the provider) or a reference
(e.g. a Vault secret) that a resolver reads at build time. Every value is added to the build's masker the
moment it is known; values live in memory for the build only and are never returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from .errors import GoldsmithError
from .log import Masker

Resolver = Callable[[Any, str], str]  # (reference, property path) -> value


def _no_resolver(ref: Any, path: str) -> str:
    raise GoldsmithError(f"{path}: this build cannot resolve secret references ({type(ref).__name__})")


class SecretStore:
    def __init__(self, masker: Masker | None = None, resolver: Resolver | None = None) -> None:
        self.masker = masker or Masker()
        self.resolver = resolver or _no_resolver
        self.files: list[str] = []  # guest paths of secret files, removed before the snapshot

    def reveal(self, value: Any, path: str) -> str:
        """A secret field's value as text: given values as they are, references resolved (and masked)."""
        if dataclasses.is_dataclass(value):
            value = self.resolver(value, path)
        if not isinstance(value, str):
            raise GoldsmithError(f"{path}: a secret value must be a string, got {type(value).__name__}")
        self.masker.add(value)
        return value

    def env(self, mapping: Mapping[str, Any], path: str) -> dict[str, str]:
        return {k: self.reveal(v, f"{path}.{k}") for k, v in mapping.items()}

    def track_file(self, guest_path: str) -> None:
        if guest_path not in self.files:
            self.files.append(guest_path)
