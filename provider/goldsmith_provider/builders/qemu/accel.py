"""Pick the QEMU accelerator: KVM where it really works, TCG otherwise.

``/dev/kvm`` opening is not proof that KVM works: on nested hosts (e.g. PVM) it opens, SeaBIOS even runs, and
the guest dies later with ``KVM internal error. Suberror: 1`` (an emulation failure on ``lock cmpxchg16b``,
which Linux's SLUB allocator executes early in boot). So the decision is:

1. ``GOLDSMITH_ACCEL=kvm|tcg`` wins;
2. ``/dev/kvm`` missing or not openable read-write -> tcg;
3. otherwise a probe boot under ``-accel kvm``: a 512-byte boot sector that enters long mode and runs
   ``lock cmpxchg16b`` on an ordinary RAM page, reporting progress on the debug console (port 0xe9), then resets
   the machine (with ``-no-reboot`` QEMU exits 0). On a working KVM it finishes in well under a second of guest
   time; on the broken one QEMU pauses the guest with the internal error and is killed at the probe timeout.
   The result is cached in ``cache_root/accel.json`` keyed by the host kernel release and the QEMU binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Protocol

from goldsmith_provider.engine.errors import CommandError, GoldsmithError

ACCELERATORS = ("kvm", "tcg")
ENV_OVERRIDE = "GOLDSMITH_ACCEL"
PROBE_TIMEOUT_S = 10.0
PROBE_FORMAT_VERSION = 1  # bump when the probe changes: invalidates cached results

Log = Callable[[str], None]


class Run(Protocol):
    def __call__(
        self,
        argv: list[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> None: ...


class LocalCommandError(CommandError, RuntimeError):
    """Raised by :func:`run_local`; a ``RuntimeError`` too, for callers that only know that much."""


def run_local(
    argv: list[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Fallback subprocess helper: run argv, raise with the last 20 output lines if it fails or times out.

    Like ``goldsmith_provider.engine.proc.run``, ``env`` is added to the inherited environment.
    """
    what = " ".join(argv[:3]) + (" ..." if len(argv) > 3 else "")
    full_env = {**os.environ, **env} if env is not None else None
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=full_env, timeout=timeout, check=False, capture_output=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise LocalCommandError(what, 127, "", hint=f"{argv[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise LocalCommandError(f"{what} (timed out after {timeout:g} s)", None, _tail(exc.stdout, exc.stderr)) from exc
    if proc.returncode != 0:
        status = proc.returncode
        hint = f"killed by signal {-status}" if status < 0 else None
        raise LocalCommandError(what, status, _tail(proc.stdout, proc.stderr), hint=hint)


def _tail(stdout: bytes | str | None, stderr: bytes | str | None, lines: int = 20) -> str:
    def text(b: bytes | str | None) -> str:
        if b is None:
            return ""
        return b.decode(errors="replace") if isinstance(b, bytes) else b

    return "\n".join((text(stdout) + text(stderr)).splitlines()[-lines:])


def qemu_accel_args(accel: str) -> list[str]:
    """QEMU arguments selecting ``accel`` and the matching CPU model."""
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise GoldsmithError(f"unknown accelerator {accel!r}", hint=f"use one of {', '.join(ACCELERATORS)}")


def detect_accelerator(
    cache_root: Path | None,
    *,
    log: Log,
    run: Run = run_local,
    qemu: str = "qemu-system-x86_64",
    kvm_device: str = "/dev/kvm",
    probe_timeout: float = PROBE_TIMEOUT_S,
) -> str:
    """Return "kvm" or "tcg" and log one line saying which and why."""
    accel, reason = _decide(cache_root, run=run, qemu=qemu, kvm_device=kvm_device, probe_timeout=probe_timeout)
    log(f"accelerator: {accel} ({reason})")
    return accel


def _decide(
    cache_root: Path | None, *, run: Run, qemu: str, kvm_device: str, probe_timeout: float
) -> tuple[str, str]:
    override = os.environ.get(ENV_OVERRIDE, "").strip().lower()
    if override:
        if override not in ACCELERATORS:
            raise GoldsmithError(
                f"{ENV_OVERRIDE}={os.environ[ENV_OVERRIDE]!r} is not an accelerator",
                hint=f"set it to one of {', '.join(ACCELERATORS)}, or unset it to detect",
            )
        return override, f"{ENV_OVERRIDE}={override}"

    problem = _kvm_device_problem(kvm_device)
    if problem:
        return "tcg", problem

    key = _cache_key(qemu)
    cache_file = cache_root / "accel.json" if cache_root is not None else None
    cached = _read_cache(cache_file).get(key) if cache_file else None
    if cached and cached.get("accel") in ACCELERATORS:
        return cached["accel"], f"{cached.get('reason', '')}, cached in {cache_file}"

    started = time.monotonic()
    failure = _probe_kvm(run=run, qemu=qemu, timeout=probe_timeout)
    seconds = round(time.monotonic() - started, 2)
    accel, reason = ("tcg", f"kvm probe failed: {failure}") if failure else ("kvm", "kvm probe passed")
    reason += f", probe {seconds:g} s"
    if cache_file:
        _write_cache(cache_file, key, {"accel": accel, "reason": reason, "probe_seconds": seconds})
    return accel, reason


def _kvm_device_problem(kvm_device: str) -> str | None:
    if not os.path.exists(kvm_device):
        return f"{kvm_device} is absent"
    try:
        fd = os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{kvm_device} cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


def _cache_key(qemu: str) -> str:
    """Host kernel release + QEMU binary identity (path, size, mtime): a kernel or QEMU upgrade re-probes.

    The binary's stat stands in for its version string because ``run`` returns no output.
    """
    path = shutil.which(qemu) or qemu
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        binary = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        binary = f"{path}:missing"
    return f"v{PROBE_FORMAT_VERSION}|{os.uname().release}|{binary}"


def _read_cache(cache_file: Path) -> dict[str, dict]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, key: str, entry: dict) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    data = _read_cache(cache_file)
    data[key] = entry
    fd, tmp = tempfile.mkstemp(prefix=".accel-", suffix=".json", dir=cache_file.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, cache_file)


# The probe guest, assembled with GNU as (--64) and `ld -Ttext 0x7c00 --oformat binary`:
#   .code16: cli; zero ds/es/ss; sp=0x7c00; zero 0x1000..0x5fff (rep stosw);
#            PML4[0]@0x1000=0x2003, PDPT[0]@0x2000=0x3003, PD[0]@0x3000=0x83 (2 MiB identity page);
#            lgdt gdtr; CR4.PAE; CR3=0x1000; EFER.LME (rdmsr/wrmsr 0xc0000080); CR0.PG|PE; ljmp 0x08:long_mode
#   .code64 long_mode: out 0xe9,'L'; mov esi,0x5000; zero eax/edx/ebx/ecx; lock cmpxchg16b [rsi];
#            out 0xe9,'A'; out 0x64,0xfe (keyboard-controller reset; -no-reboot turns it into exit 0); hlt loop
#   gdt: null, 64-bit code 0x00209A0000000000, data 0x0000920000000000; gdtr: limit 23, base gdt; 0x55aa at 510
_PROBE_CODE = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007cbf0010b90028f3ab66c70600100320000066c70600200330000066c7060030830000000f0116a87c"
    "0f20e06683c8200f22e066b8001000000f22d866b9800000c00f32660d000100000f300f20c0660d010000800f22c0ea687c0800"
    "b04ce6e9be0050000031c031d231db31c9f0480fc70eb041e6e9b0fee664f4ebfd0f1f8000000000000000000000000000000000"
    "009a200000000000009200001700907c"
)
PROBE_BOOT_SECTOR = _PROBE_CODE.ljust(510, b"\0") + b"\x55\xaa"


def _probe_kvm(*, run: Run, qemu: str, timeout: float) -> str | None:
    """Boot the probe sector under KVM; None if it completed, else why not."""
    with tempfile.TemporaryDirectory(prefix="goldsmith-kvm-probe-") as tmp:
        disk = Path(tmp, "probe.img")
        disk.write_bytes(PROBE_BOOT_SECTOR)
        progress = Path(tmp, "debugcon.log")
        argv = [
            qemu, *qemu_accel_args("kvm"), "-m", "16", "-nodefaults", "-display", "none", "-no-reboot",
            "-monitor", "none", "-serial", "none", "-debugcon", f"file:{progress}",
            "-drive", f"file={disk},format=raw,if=floppy",
        ]  # fmt: skip
        error: Exception | None = None
        try:
            run(argv, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "do not use kvm"
            error = exc
        seen = progress.read_text(errors="replace") if progress.exists() else ""
    if "A" in seen:
        return None
    text = str(error) if error else ""
    if "KVM internal error" in text:
        return "KVM internal error"
    if "L" in seen:
        # Reached long mode, never got past one instruction: QEMU paused it on the emulation failure (its error
        # text is followed by a register dump longer than the output tail a run helper keeps).
        return "KVM internal error at lock cmpxchg16b"
    if error:
        return text.splitlines()[0] if text else type(error).__name__
    return "probe guest exited without reaching its end"
