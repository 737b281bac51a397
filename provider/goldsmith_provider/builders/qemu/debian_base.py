"""An offline Debian base disk, made with debootstrap, that boots by itself under BIOS, cached by content.

The result, ``cache_root/bases/debootstrap-<digest[:16]>/disk.raw``, is a raw disk with an MBR partition table,
one ext4 root partition at 1 MiB and GRUB (grub-pc) in the MBR, so it can be booted by plain QEMU/SeaBIOS with no
``-kernel`` and converted to vmdk/vhdx/Vagrant boxes. It needs neither loop devices nor mounts:

1. ``debootstrap`` into a temporary ROOT directory (required packages + grub-pc + sudo + the recipe's extras);
2. configure ROOT as files and chroot commands: networkd DHCP, resolved, serial console, hostname, locked root,
   sshd, apt sources, the ``goldsmith-seed`` boot unit; then generalize it (no host keys, empty machine-id);
3. write the MBR in Python and ``mkfs.ext4 -E offset=1MiB -d ROOT`` straight into the image file;
4. boot the image once with direct kernel boot (kernel and initrd from ROOT/boot, ``root=UUID=…``,
   ``systemd.unit=goldsmith-install-bootloader.service``): that one-shot unit runs ``grub-install /dev/vda`` and
   ``update-grub`` inside the guest, deletes itself, re-generalizes and powers off;
5. check the console marker and the MBR, write ``recipe.json`` and rename the build dir into the cache.

Builds are serialized per digest with a file lock, happen in a temporary directory next to the cache entry and
end with an atomic rename, so a failed or killed build never leaves a cache entry behind (leftover temporary
directories are removed by the next build of the same digest).

Every boot of an image made from this base runs ``goldsmith-seed`` before sshd: it installs SSH keys from a disk
labelled ``cidata`` (see :data:`SEED_SCRIPT`) and generates host keys if there are none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from goldsmith_provider.engine.errors import GoldsmithError, Problem, ValidationError
from goldsmith_provider.engine.locks import file_lock

from .accel import Run, detect_accelerator, qemu_accel_args, run_local

# Bump whenever the build procedure or the files it installs change: it is part of every digest.
BASE_FORMAT_VERSION = 1

REQUIRED_PACKAGES = (
    "systemd-sysv", "udev", "kmod", "linux-image-cloud-amd64", "openssh-server", "iproute2", "ca-certificates",
    "netbase", "dbus",
)  # fmt: skip
# What this procedure itself relies on: the boot loader, sudo for seeded users, resolved for DNS from DHCP
# (a static resolv.conf would only be right under QEMU user networking), fsck/resize2fs for the root fs.
SUPPORT_PACKAGES = ("grub-pc", "sudo", "systemd-resolved", "e2fsprogs")
VARIANTS = ("minbase", "buildd", "default")  # "default": debootstrap without --variant (required + important)

SECTOR = 512
PARTITION_OFFSET = 1 << 20  # 1 MiB: the usual alignment, and room for GRUB's core.img after the MBR
ROOT_LABEL = "goldsmith-root"
HOSTNAME = "goldsmith"
BOOT_DISK = "/dev/vda"  # the base is built on virtio; see _BOOTLOADER_SCRIPT for what happens elsewhere
BOOTLOADER_OK = "goldsmith-bootloader: ok"
POWERED_OFF = "reboot: Power down"  # the kernel's last line after a clean poweroff

DEBOOTSTRAP_TIMEOUT_S = 1800
CHROOT_TIMEOUT_S = 600
BOOTLOADER_BOOT_TIMEOUT_S = 1200

Log = Callable[[str], None]

_SUITE_RE = re.compile(r"^[a-z][a-z0-9.-]*$")
_MIRROR_RE = re.compile(r"^https?://[^\s,]+$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


@dataclass(frozen=True)
class DebootstrapRecipe:
    """What the base contains; its digest names the cache entry."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"  # one of VARIANTS
    include: tuple[str, ...] = ()  # extra packages on top of REQUIRED_PACKAGES + SUPPORT_PACKAGES (order-free)
    disk_size_gb: int = 4  # GiB, the virtual size of disk.raw (sparse)

    def packages(self) -> tuple[str, ...]:
        """Everything passed to ``debootstrap --include``, deduplicated, in a stable order."""
        seen: dict[str, None] = {}
        for name in (*REQUIRED_PACKAGES, *SUPPORT_PACKAGES, *sorted(self.include)):
            seen.setdefault(name, None)
        return tuple(seen)


def validate_recipe(recipe: DebootstrapRecipe, path: str = "recipe") -> None:
    """Raise :class:`ValidationError` listing every problem of ``recipe`` at once."""
    problems: list[Problem] = []
    if not isinstance(recipe.suite, str) or not _SUITE_RE.match(recipe.suite):
        problems.append(Problem(f"{path}.suite", f"{recipe.suite!r} is not a Debian suite name (e.g. bookworm)"))
    if not isinstance(recipe.mirror, str) or not _MIRROR_RE.match(recipe.mirror):
        problems.append(Problem(f"{path}.mirror", f"{recipe.mirror!r} is not an http(s) URL"))
    if recipe.variant not in VARIANTS:
        problems.append(Problem(f"{path}.variant", f"{recipe.variant!r} is not one of {', '.join(VARIANTS)}"))
    if not isinstance(recipe.include, tuple):
        problems.append(Problem(f"{path}.include", "must be a tuple of package names"))
    else:
        for i, name in enumerate(recipe.include):
            if not isinstance(name, str) or not _PACKAGE_RE.match(name):
                problems.append(Problem(f"{path}.include[{i}]", f"{name!r} is not a Debian package name"))
    size = recipe.disk_size_gb
    if not isinstance(size, int) or isinstance(size, bool) or not 2 <= size <= 2047:
        problems.append(Problem(f"{path}.disk_size_gb", f"{size!r} must be an integer from 2 to 2047 (GiB, MBR)"))
    if problems:
        raise ValidationError(problems)


def recipe_digest(recipe: DebootstrapRecipe) -> str:
    """sha256 over canonical JSON of the recipe, the build procedure version and the files it installs."""
    doc = {
        "kind": "debootstrap-base",
        "format": BASE_FORMAT_VERSION,
        "recipe": {**asdict(recipe), "include": sorted(set(recipe.include))},
        "guest_files": hashlib.sha256("\0".join(_GUEST_FILE_TEMPLATES).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_debian_base(
    recipe: DebootstrapRecipe,
    cache_root: Path,
    *,
    log: Log,
    run: Run = run_local,
    accel: str | None = None,
    keep_failed: bool = False,
) -> Path:
    """Return the path of the base's ``disk.raw``, building it first unless it is cached.

    ``accel`` ("kvm"/"tcg") is for the one boot that installs GRUB; None detects it. ``keep_failed`` keeps the
    temporary build directory of a failed build for debugging (it is never used as a cache entry).
    """
    validate_recipe(recipe)
    digest = recipe_digest(recipe)
    bases = Path(cache_root) / "bases"
    name = f"debootstrap-{digest[:16]}"
    entry = bases / name
    if _is_complete(entry, digest):
        log(f"debian base: cached {entry / 'disk.raw'}")
        return entry / "disk.raw"
    bases.mkdir(parents=True, exist_ok=True)
    waited = time.monotonic()
    with file_lock(bases / f"{name}.lock"):
        if time.monotonic() - waited > 1:
            log(f"debian base: waited {time.monotonic() - waited:.0f} s for another build of {name}")
        if _is_complete(entry, digest):
            log(f"debian base: cached {entry / 'disk.raw'} (built by a concurrent build)")
            return entry / "disk.raw"
        for stale in sorted(bases.glob(f".tmp-{name}-*")):
            log(f"debian base: removing leftover {stale}")
            remove_tree(stale, run=run)
        if entry.exists():  # not complete, yet renamed into place: only by hand; never trust it
            log(f"debian base: removing incomplete {entry}")
            remove_tree(entry, run=run)
        _build(recipe, digest, bases, entry, log=log, run=run, accel=accel, keep_failed=keep_failed)
    return entry / "disk.raw"


def _is_complete(entry: Path, digest: str) -> bool:
    try:
        meta = json.loads((entry / "recipe.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("digest") != digest:
        raise GoldsmithError(
            f"{entry} holds a base with digest {meta.get('digest')!r}, expected {digest}",
            hint=f"remove {entry} (a 16-hex-digit prefix collision, or a hand-edited cache)",
        )
    return (entry / "disk.raw").is_file()


@dataclass
class _Build:
    """Where one build puts things; everything lives under ``work``."""

    work: Path
    digest: str
    root_uuid: str = field(init=False)
    disk_id: int = field(init=False)

    def __post_init__(self) -> None:
        # Derived from the digest, so the same recipe always yields the same identifiers.
        self.root_uuid = str(uuid.UUID(hex=hashlib.sha256(f"root-fs:{self.digest}".encode()).hexdigest()[:32], version=4))
        self.disk_id = int.from_bytes(hashlib.sha256(f"disk-id:{self.digest}".encode()).digest()[:4], "little")

    @property
    def root(self) -> Path:
        return self.work / "root"

    @property
    def out(self) -> Path:  # renamed into the cache as a whole
        return self.work / "out"

    @property
    def disk(self) -> Path:
        return self.out / "disk.raw"

    @property
    def boot(self) -> Path:  # kernel + initrd copied out of ROOT for the boot-loader boot
        return self.work / "boot"


def _build(
    recipe: DebootstrapRecipe,
    digest: str,
    bases: Path,
    entry: Path,
    *,
    log: Log,
    run: Run,
    accel: str | None,
    keep_failed: bool,
) -> None:
    started = time.monotonic()
    work = bases / f".tmp-{entry.name}-{os.getpid()}-{os.urandom(3).hex()}"
    work.mkdir()
    build = _Build(work, digest)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_tree, work, run=run)
        try:
            build.out.mkdir()
            timings: dict[str, float] = {}
            with _timed(timings, "debootstrap", log):
                debootstrap(recipe, build.root, log=log, run=run)
            with _timed(timings, "configure", log):
                configure_guest(recipe, build.root, root_uuid=build.root_uuid, run=run)
                kernel, initrd = copy_boot_files(build.root, build.boot)
                generalize_guest(build.root)
            with _timed(timings, "mkfs", log):
                make_disk(build.disk, build.root, size_bytes=recipe.disk_size_gb << 30,
                          root_uuid=build.root_uuid, disk_id=build.disk_id, run=run)  # fmt: skip
                remove_tree(build.root, run=run)
            if accel is None:
                accel = detect_accelerator(bases.parent, log=log, run=run)
            with _timed(timings, "install boot loader", log):
                install_bootloader(build, kernel, initrd, accel=accel, log=log, run=run)
            timings["total"] = round(time.monotonic() - started, 1)
            write_metadata(build, recipe, kernel=kernel.name, timings=timings)
            _fsync(build.disk)
            os.rename(build.out, entry)
            _fsync(entry.parent)
        except BaseException:
            if keep_failed:
                cleanup.pop_all()
                log(f"debian base: build failed; kept {work} for debugging (remove it by hand)")
            raise
    st = (entry / "disk.raw").stat()
    log(
        f"debian base: built {entry / 'disk.raw'} in {time.monotonic() - started:.0f} s "
        f"({st.st_size / 2**30:.1f} GiB virtual, {st.st_blocks * 512 / 2**20:.0f} MiB allocated)"
    )


@contextlib.contextmanager
def _timed(timings: dict[str, float], what: str, log: Log) -> Iterator[None]:
    log(f"debian base: {what} ...")
    t0 = time.monotonic()
    yield
    timings[what] = round(time.monotonic() - t0, 1)
    log(f"debian base: {what} done in {timings[what]:.1f} s")


# --- step 1: debootstrap -------------------------------------------------------------------------------------


def _host_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C.UTF-8",
        "HOME": "/root",
    }


def debootstrap(recipe: DebootstrapRecipe, root: Path, *, log: Log, run: Run) -> None:
    argv = ["debootstrap"]
    if recipe.variant != "default":
        argv.append(f"--variant={recipe.variant}")
    argv += [f"--include={','.join(recipe.packages())}", "--components=main", recipe.suite, str(root), recipe.mirror]
    log(f"debian base: debootstrap {recipe.suite} from {recipe.mirror} ({len(recipe.packages())} packages included)")
    run(argv, env=_host_env(), timeout=DEBOOTSTRAP_TIMEOUT_S)
    mounts = mounts_under(root)
    if mounts:
        raise GoldsmithError(f"debootstrap left mounts under {root}: {', '.join(map(str, mounts))}")


# --- step 2: configure and generalize ROOT -------------------------------------------------------------------


def write_guest_files(root: Path, files: dict[str, tuple[str, int]]) -> None:
    """Write ``{relative path: (text, mode)}`` into ROOT, replacing what is there (links included)."""
    for rel, (text, mode) in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(text)
        target.chmod(mode)


def configure_guest(recipe: DebootstrapRecipe, root: Path, *, root_uuid: str, run: Run) -> None:
    """Write the guest's configuration into ROOT and run the few commands that need its own tools."""
    write_guest_files(root, guest_files(recipe, root_uuid=root_uuid))
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")

    def chroot(*argv: str) -> None:
        run(["chroot", str(root), *argv], env=_host_env(), timeout=CHROOT_TIMEOUT_S)

    chroot("systemctl", "enable", "systemd-networkd.service", "systemd-resolved.service", "goldsmith-seed.service")
    chroot("passwd", "--lock", "root")
    # The initramfs was made by the kernel's postinst before /etc/fstab existed (no fsck of /): make it again.
    chroot("update-initramfs", "-u", "-k", "all")


def copy_boot_files(root: Path, dest: Path) -> tuple[Path, Path]:
    """Copy the (single) kernel and its initrd out of ROOT/boot for the direct-kernel boot."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise GoldsmithError(f"expected one kernel in {root / 'boot'}, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise GoldsmithError(f"{initrd} is missing: the kernel's initramfs was not generated")
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(kernels[0], dest)), Path(shutil.copy2(initrd, dest))


def generalize_guest(root: Path) -> None:
    """Remove what must differ per machine or is just cache: host keys, machine-id, apt lists and caches."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")  # empty, not missing: "not a first boot", id generated at boot
    for rel in ("var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret"):
        p = root / rel
        if p.is_symlink() or p.exists():
            p.unlink()
    for rel in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log/journal"):
        d = root / rel
        if not d.is_dir():
            continue
        for child in d.iterdir():
            if child.name in ("partial", "lock") or (rel == "var/cache/apt/archives" and child.is_dir()):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for p in (root / "var/cache/apt").glob("*.bin"):
        p.unlink()
    for name in ("dpkg.log", "alternatives.log", "bootstrap.log"):
        p = root / "var/log" / name
        if p.exists():
            p.unlink()
    for rel in ("var/log/apt/history.log", "var/log/apt/term.log", "var/log/apt/eipp.log.xz"):
        p = root / rel
        if p.exists():
            p.unlink()


def guest_files(recipe: DebootstrapRecipe, *, root_uuid: str) -> dict[str, tuple[str, int]]:
    """Every file the base gets from goldsmith: path relative to ROOT -> (text, mode)."""
    return {
        "etc/hostname": (f"{HOSTNAME}\n", 0o644),
        "etc/hosts": (_HOSTS.format(hostname=HOSTNAME), 0o644),
        "etc/fstab": (_FSTAB.format(uuid=root_uuid), 0o644),
        "etc/apt/sources.list": (apt_sources(recipe), 0o644),
        "etc/systemd/network/80-goldsmith-dhcp.network": (_NETWORK, 0o644),
        "etc/ssh/sshd_config.d/50-goldsmith.conf": (_SSHD_CONFIG, 0o644),
        "etc/apt/apt.conf.d/50goldsmith-no-translations": (_APT_NO_TRANSLATIONS, 0o644),
        "etc/default/grub.d/50-goldsmith.cfg": (_GRUB_DEFAULTS, 0o644),
        "usr/local/sbin/goldsmith-seed": (SEED_SCRIPT, 0o755),
        "etc/systemd/system/goldsmith-seed.service": (_SEED_UNIT, 0o644),
        "usr/local/sbin/goldsmith-install-bootloader": (_BOOTLOADER_SCRIPT.format(disk=BOOT_DISK, ok=BOOTLOADER_OK), 0o755),
        "etc/systemd/system/goldsmith-install-bootloader.service": (_BOOTLOADER_UNIT, 0o644),
    }


def apt_sources(recipe: DebootstrapRecipe) -> str:
    """sources.list: the suite, plus -updates and -security for releases (not for sid/unstable/experimental)."""
    mirror = recipe.mirror.rstrip("/")
    lines = [f"deb {mirror} {recipe.suite} main"]
    if recipe.suite not in ("sid", "unstable", "experimental", "rc-buggy"):
        lines.append(f"deb {mirror} {recipe.suite}-updates main")
        if mirror.endswith("/debian"):  # deb.debian.org and most mirrors serve debian-security next to debian
            lines.append(f"deb {mirror}-security {recipe.suite}-security main")
    return "\n".join(lines) + "\n"


_HOSTS = """127.0.0.1\tlocalhost
127.0.1.1\t{hostname}
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

_FSTAB = """# <file system> <mount point> <type> <options> <dump> <pass>
UUID={uuid}\t/\text4\terrors=remount-ro\t0\t1
"""

# en*: predictable names (virtio, e1000, vmxnet3); eth*: Hyper-V netvsc and net.ifnames=0 setups.
_NETWORK = """[Match]
Name=en* eth*

[Network]
DHCP=yes
"""

# Translation-en is ~40 % of an `apt-get update` of bookworm (6 of 16 MB): builds update often.
_APT_NO_TRANSLATIONS = 'Acquire::Languages "none";\n'

_SSHD_CONFIG = """# goldsmith: keys only for root; host keys come from the seed disk or ssh-keygen -A at boot
PermitRootLogin prohibit-password
"""

# A drop-in, so grub-pc's own ucf-managed /etc/default/grub stays pristine for upgrades.
# "console serial": the serial line for QEMU, the VGA console for hypervisors that show a screen.
_GRUB_DEFAULTS = """GRUB_TIMEOUT=1
GRUB_TIMEOUT_STYLE=menu
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""

SEED_SCRIPT = r"""#!/bin/sh
# goldsmith-seed: SSH access from a seed disk, and sshd host keys if there are none.
# Runs at every boot before ssh.service (goldsmith-seed.service). The seed is any disk whose filesystem
# (vfat or iso9660) is labelled "cidata" -- the label cloud-init's NoCloud uses -- holding:
#   goldsmith/authorized_keys            -> ~USER/.ssh/authorized_keys (mode 600, dir 700)
#   goldsmith/user                       -> USER (default root); created with passwordless sudo if missing
#   goldsmith/ssh_host_ed25519_key[.pub] -> /etc/ssh/ (600/644); the other host key types are removed
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

log() { echo "goldsmith-seed: $*"; }

seed_by_label() {
    for label in cidata CIDATA; do
        dev=$(blkid -L "$label" 2>/dev/null) && [ -n "$dev" ] && { echo "$dev"; return 0; }
    done
    return 1
}

# At once if the disk is there already (virtio disks are probed before the root fs is mounted); otherwise
# after udev has processed the coldplug events (CD-ROM drivers load late), at most ~10 s in all.
find_seed() {
    seed_by_label && return 0
    udevadm settle --timeout=8 >/dev/null 2>&1 || true
    seed_by_label && return 0
    sleep 1
    seed_by_label
}

install_host_key() {
    src=$1
    install -m 600 -o root -g root "$src/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key || return 1
    if [ -f "$src/ssh_host_ed25519_key.pub" ]; then
        install -m 644 -o root -g root "$src/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
    else
        ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
        chmod 644 /etc/ssh/ssh_host_ed25519_key.pub
    fi
    for f in /etc/ssh/ssh_host_*; do
        case "$f" in
            /etc/ssh/ssh_host_ed25519_key|/etc/ssh/ssh_host_ed25519_key.pub) ;;
            *) rm -f "$f" ;;
        esac
    done
    log "installed ed25519 host key"
}

install_authorized_keys() {
    src=$1
    user=root
    if [ -f "$src/user" ]; then
        user=$(tr -d ' \t\r\n' < "$src/user")
        case "$user" in
            ""|-*|*[!a-z0-9_-]*) log "ignoring invalid user name in goldsmith/user"; return 1 ;;
        esac
    fi
    if ! getent passwd "$user" >/dev/null; then
        useradd --create-home --shell /bin/bash "$user" || return 1
        printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "/etc/sudoers.d/90-goldsmith-$user"
        chmod 440 "/etc/sudoers.d/90-goldsmith-$user"
        log "created user $user with passwordless sudo"
    fi
    home=$(getent passwd "$user" | cut -d: -f6)
    group=$(id -gn "$user")
    install -d -m 700 -o "$user" -g "$group" "$home/.ssh" || return 1
    install -m 600 -o "$user" -g "$group" "$src/authorized_keys" "$home/.ssh/authorized_keys" || return 1
    log "installed authorized_keys for $user"
}

if dev=$(find_seed); then
    mnt=$(mktemp -d /run/goldsmith-seed.XXXXXX)
    if mount -o ro "$dev" "$mnt"; then
        log "seed $dev"
        [ -f "$mnt/goldsmith/ssh_host_ed25519_key" ] && install_host_key "$mnt/goldsmith"
        [ -f "$mnt/goldsmith/authorized_keys" ] && install_authorized_keys "$mnt/goldsmith"
        umount "$mnt"
    else
        log "cannot mount seed $dev"
    fi
    rmdir "$mnt"
else
    log "no seed disk"
fi

if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    ssh-keygen -A
    log "generated new host keys"
fi
exit 0
"""

_SEED_UNIT = """[Unit]
Description=goldsmith: SSH keys from a cidata seed disk, host keys if missing
Documentation=file:/usr/local/sbin/goldsmith-seed
After=local-fs.target systemd-udev-trigger.service
Before=ssh.service ssh.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/goldsmith-seed
StandardOutput=journal+console
TimeoutStartSec=90

[Install]
WantedBy=multi-user.target ssh.service
"""

# Runs once, in the build's only boot (kernel cmdline systemd.unit=goldsmith-install-bootloader.service), then
# removes itself. grub-pc/install_devices is left empty on purpose (install_devices_empty=true): a converted
# image sees its disk as /dev/sda (vmdk, vhdx) or /dev/nvme0n1, and with a recorded /dev/vda that is missing
# grub-pc's postinst fails noninteractive upgrades ("You must correct your GRUB install devices"). With it
# empty, upgrades of grub-pc skip grub-install: the MBR core.img and /boot/grub/i386-pc modules stay the
# consistent older pair (grub-install copies both), only grub.cfg is regenerated.
_BOOTLOADER_SCRIPT = """#!/bin/sh
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "goldsmith-bootloader: grub-install {disk}"
grub-install --target=i386-pc {disk}
update-grub
printf '%s\\n' "grub-pc grub-pc/install_devices multiselect " "grub-pc grub-pc/install_devices_empty boolean true" \\
    | debconf-set-selections
rm -f /etc/systemd/system/goldsmith-install-bootloader.service /usr/local/sbin/goldsmith-install-bootloader
# generalize again: this boot must leave no per-machine state behind (stop first what writes at shutdown)
systemctl stop systemd-random-seed.service systemd-update-utmp.service || true
journalctl --relinquish-var || true
rm -rf /var/log/journal/*
if mountpoint -q /etc/machine-id; then umount /etc/machine-id; fi
: > /etc/machine-id
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do if [ -f "$f" ]; then : > "$f"; fi; done
sync
echo "{ok}"
"""

_BOOTLOADER_UNIT = """[Unit]
Description=goldsmith: install GRUB on the boot disk (base build only)
After=local-fs.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/goldsmith-install-bootloader
StandardOutput=journal+console
StandardError=journal+console
"""

_GUEST_FILE_TEMPLATES = (
    _HOSTS, _FSTAB, _NETWORK, _SSHD_CONFIG, _APT_NO_TRANSLATIONS, _GRUB_DEFAULTS, SEED_SCRIPT, _SEED_UNIT, _BOOTLOADER_SCRIPT,
    _BOOTLOADER_UNIT, "\n".join(REQUIRED_PACKAGES + SUPPORT_PACKAGES), ROOT_LABEL, HOSTNAME, BOOT_DISK,
)  # fmt: skip


# --- step 3: the disk image ----------------------------------------------------------------------------------

# Pinned ext4 features (Debian 12's defaults): the guest's GRUB must read the filesystem whatever mke2fs the
# build host has (newer e2fsprogs default to orphan_file / metadata_csum_seed).
_MKE2FS_CONF = """[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""


def make_disk(disk: Path, root: Path, *, size_bytes: int, root_uuid: str, disk_id: int, run: Run) -> None:
    """A sparse raw disk: MBR with one bootable Linux partition at 1 MiB, ext4 filled from ROOT."""
    mounts = mounts_under(root)
    if mounts:
        raise GoldsmithError(f"refusing to copy {root} into the image: mounted {', '.join(map(str, mounts))}")
    with open(disk, "wb") as f:
        f.truncate(size_bytes)
        f.write(mbr(size_bytes, disk_id=disk_id))
    conf = disk.parent / "mke2fs.conf"
    conf.write_text(_MKE2FS_CONF)
    part_kib = (size_bytes - PARTITION_OFFSET) // 1024
    try:
        run(
            ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-U", root_uuid, "-E", f"offset={PARTITION_OFFSET}",
             "-d", str(root), str(disk), f"{part_kib}k"],
            env={**_host_env(), "MKE2FS_CONFIG": str(conf)},
            timeout=CHROOT_TIMEOUT_S,
        )  # fmt: skip
    finally:
        conf.unlink()


def mbr(size_bytes: int, *, disk_id: int) -> bytes:
    """A 512-byte MBR (no boot code: grub-install writes it) with one active type-0x83 partition at 1 MiB."""
    start = PARTITION_OFFSET // SECTOR
    count = size_bytes // SECTOR - start
    entry = struct.pack("<B3sB3sII", 0x80, _chs(start), 0x83, _chs(start + count - 1), start, count)
    return bytes(440) + struct.pack("<IH", disk_id, 0) + entry + bytes(48) + b"\x55\xaa"


def _chs(lba: int) -> bytes:
    """CHS address in the 255-head, 63-sector geometry; beyond 1023 cylinders the conventional maximum."""
    cylinder, rest = divmod(lba, 255 * 63)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    head, sector = divmod(rest, 63)
    return bytes((head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF))


# --- step 4: the boot loader, installed by the guest itself --------------------------------------------------


def install_bootloader(build: _Build, kernel: Path, initrd: Path, *, accel: str, log: Log, run: Run) -> None:
    """Boot the disk once (direct kernel boot) into a unit that runs grub-install + update-grub and powers off."""
    console = build.out / "build-console.log"
    append = (
        f"root=UUID={build.root_uuid} rw console=ttyS0,115200n8 panic=-1 "
        "systemd.unit=goldsmith-install-bootloader.service systemd.show_status=1"
    )
    argv = [
        "qemu-system-x86_64", *qemu_accel_args(accel), "-smp", "2", "-m", "1024", "-nodefaults",
        "-display", "none", "-no-reboot", "-monitor", "none", "-nic", "none", "-serial", f"file:{console}",
        "-drive", f"file={build.disk},if=virtio,format=raw",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
    ]  # fmt: skip
    log(f"debian base: booting once under {accel} to install GRUB (console: {console})")
    error: BaseException | None = None
    try:
        run(argv, timeout=BOOTLOADER_BOOT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - reported below together with the guest console
        error = exc
    text = console.read_text(errors="replace") if console.exists() else ""
    with open(build.disk, "rb") as f:
        boot_code = f.read(440)
    # All three, because QEMU exits 0 when killed by SIGTERM: the script finished, the guest shut down cleanly
    # (the filesystem is unmounted), and the MBR holds GRUB's boot code.
    if error or BOOTLOADER_OK not in text or POWERED_OFF not in text or b"GRUB" not in boot_code:
        tail = "\n".join(text.splitlines()[-30:])
        why = f"QEMU failed: {error}" if error else "the guest did not report success and power off"
        raise GoldsmithError(
            f"installing GRUB in the base image failed ({why})\n--- guest console (last lines) ---\n{tail}",
            hint="rerun with keep_failed=True to inspect the work directory",
        ) from error


# --- step 5: metadata ----------------------------------------------------------------------------------------


def write_metadata(build: _Build, recipe: DebootstrapRecipe, *, kernel: str, timings: dict[str, float]) -> None:
    meta = {
        "digest": build.digest,
        "format": BASE_FORMAT_VERSION,
        "recipe": {**asdict(recipe), "include": sorted(set(recipe.include))},
        "packages": list(recipe.packages()),
        "disk": {
            "file": "disk.raw",
            "format": "raw",
            "size_bytes": recipe.disk_size_gb << 30,
            "partition_table": "msdos",
            "disk_id": f"{build.disk_id:08x}",
            "root_partition": {"number": 1, "offset_bytes": PARTITION_OFFSET, "fs": "ext4",
                               "uuid": build.root_uuid, "label": ROOT_LABEL},
            "boot_loader": "grub-pc",
        },  # fmt: skip
        "kernel": kernel,
        "seed": {"label": "cidata", "unit": "goldsmith-seed.service", "script": "/usr/local/sbin/goldsmith-seed"},
        "build_seconds": timings,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (build.out / "recipe.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


# --- helpers -------------------------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == base or point.startswith(base.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path, *, run: Run) -> None:
    """rm -rf that first unmounts whatever a killed debootstrap left mounted inside (proc, sys, dev)."""
    if not os.path.lexists(path):
        return
    for point in mounts_under(path):
        with contextlib.suppress(Exception):
            run(["umount", "--lazy", str(point)], timeout=60)
    left = mounts_under(path)
    if left:
        raise GoldsmithError(
            f"cannot remove {path}: still mounted {', '.join(map(str, left))}",
            hint=f"unmount them, then rm -rf {path}",
        )
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
