"""Shell provisioner: inline commands or local scripts, with env vars, as root or via sudo."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from typing import ClassVar

from ..engine.schema import Context, setting
from ..vault.refs import VaultSecret
from .base import ProvisionContext, run_expecting_disconnect


@dataclass(frozen=True)
class ShellProvisioner:
    TYPE: ClassVar[str] = "shell"

    inline: list[str] = setting([], doc="Commands run in order by one `sh -e` script.")
    scripts: list[str] = setting([], doc="Local scripts uploaded and run in order (after `inline`).", local_path="file")
    env: dict[str, str] = setting({}, doc="Environment variables for the commands (part of the fingerprint).")
    secret_env: dict[str, str | VaultSecret] = setting(
        {}, doc="Secret environment variables, each a value (e.g. a Pulumi secret) or a Vault reference "
                "(`VaultSecret(path=..., key=...)`, read at build time): masked in logs, values never in the fingerprint, "
                "the state or the image; passed through a file removed before the command runs.", secret=True)
    sudo: bool = setting(False, doc="Run as root through `sudo -n` when the login user is not root.")
    interpreter: str = setting("/bin/sh -e", doc="How each script is run (`/bin/bash -eux`, `python3`...).")
    expect_disconnect: bool = setting(False, doc="The commands may drop the connection (reboot): reconnect and go on.")
    timeout_s: int = setting(3600, doc="Time limit for each script.", minimum=1, identity=False)
    name: str = setting("", doc="Label shown in the log.", identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if not self.inline and not self.scripts:
            ctx.error(path, "a shell provisioner needs `inline` commands or `scripts`")
        for field_name in ("env", "secret_env"):
            for key in getattr(self, field_name):
                if not key.replace("_", "a").isalnum() or key[0].isdigit():
                    ctx.error(f"{path}.{field_name}.{key}", "is not a valid environment variable name")
        for key in sorted(set(self.env) & set(self.secret_env)):
            ctx.error(f"{path}.secret_env.{key}", "is also set in `env`: set it in one of them")
        if not self.interpreter.strip():
            ctx.error(f"{path}.interpreter", "must not be empty (e.g. '/bin/sh -e')")

    def describe(self) -> str:
        return self.name or (f"shell: {len(self.inline)} inline command(s)" if self.inline else f"shell: {', '.join(self.scripts)}")

    def provision(self, comm, pctx: ProvisionContext) -> None:
        secret_env = pctx.secrets.env(self.secret_env, f"{pctx.path}.secret_env")
        bodies: list[tuple[str, bytes]] = []
        if self.inline:
            bodies.append(("inline", ("\n".join(self.inline) + "\n").encode()))
        for script in self.scripts:
            bodies.append((script, pctx.resolve(script).read_bytes()))
        for label, body in bodies:
            remote = f"/tmp/goldsmith-script-{secrets.token_hex(6)}"
            comm.put_bytes(body, remote, mode=0o700)
            pctx.log.info(f"shell: running {label}")
            command = f"{self.interpreter} {shlex.quote(remote)}; status=$?; rm -f {shlex.quote(remote)}; exit $status"
            kwargs = dict(env=self.env, secret_env=secret_env, sudo=self.sudo, timeout=self.timeout_s)
            if self.expect_disconnect:
                run_expecting_disconnect(comm, command, pctx, **kwargs)
            else:
                comm.run(command, log=pctx.log, **kwargs)
