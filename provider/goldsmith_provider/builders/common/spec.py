"""Settings every builder shares: communicator, generalization, boot test, metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...engine.schema import setting

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def user_problem(user: str) -> str | None:
    if not USER_RE.match(user):
        return f"is not a login user name (lower-case letters, digits, '_', '.', '-'; at most 32), got {user!r}"
    return None


@dataclass(frozen=True)
class SshSettings:
    user: str = setting("root", doc="Login user. The ephemeral key is injected for this user.", check=user_problem)
    timeout_s: int = setting(900, doc="How long to wait for SSH after boot.", minimum=5, identity=False)
    reboot_timeout_s: int = setting(600, doc="How long to wait for SSH after a reboot.", minimum=5, identity=False)


@dataclass(frozen=True)
class BootTest:
    """An acceptance gate, not content: changing it never rebuilds an image."""

    enabled: bool = setting(True, doc="Boot the finished image once more and accept it only if SSH comes up and every command passes.", identity=False)
    commands: list[str] = setting([], doc="Commands that must exit 0 in the booted image (the gate).", identity=False)
    timeout_s: int = setting(900, doc="Time limit for the boot test.", minimum=5, identity=False)


@dataclass(frozen=True)
class Retention:
    keep_previous: int = setting(0, doc="On replacement keep this many previous images of the same name (deleted oldest first).", minimum=0, identity=False)


def absolute_paths_problem(paths: list[str]) -> str | None:
    bad = [p for p in paths if not p.startswith("/")]
    return f"must be absolute paths in the image; got {', '.join(map(repr, bad))}" if bad else None


DIGEST_PATHS_DOC = ("Files or directories in the image whose sha256 is recorded in the `path_digests` output (taken "
                    "before generalization); a GoldenImage's consistency report compares them across platforms.")


def name_problem(name: str) -> str | None:
    if not NAME_RE.match(name):
        return f"must be 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit; got {name!r}"
    return None
