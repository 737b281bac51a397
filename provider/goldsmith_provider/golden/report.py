"""The consistency report: are the images one template made for several platforms the same inside?

It compares what every builder records: the package manifest (``name=version`` per package) and the
digests of the template's declared paths (``digest_paths``). Platforms legitimately differ in some
packages (a VM has a kernel and a boot loader, a container has neither), so a package found on only
some platforms is *reported*, not drift, unless ``strict_packages`` is set. Drift is:

- a package installed on several platforms at different versions (unless ``allowed_drift`` names it);
- a package the template installs (``Packages.install``) missing on a platform;
- a declared path whose digest differs between platforms, or which is missing on some or all of them.
"""

from __future__ import annotations

import fnmatch
from typing import Any

NOT_RECORDED = "not recorded"


def _packages(entries: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries or []:
        name, _, version = str(entry).partition("=")
        if name:
            out[name] = version
    return out


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def consistency_report(template: str, images: dict[str, dict[str, Any]], *, paths: list[str] | None = None,
                       required_packages: list[str] | None = None, ignore_packages: list[str] | None = None,
                       allowed_drift: list[str] | None = None, strict_packages: bool = False) -> dict[str, Any]:
    """Compare the images of ``template`` (target key -> outputs with ``packages`` and ``path_digests``)."""
    paths = list(paths or [])
    ignore = list(ignore_packages or [])
    allowed = list(allowed_drift or [])
    targets = sorted(images)
    pkgs = {t: {n: v for n, v in _packages(images[t].get("packages")).items() if not _matches(n, ignore)} for t in targets}
    all_names = sorted(set().union(*pkgs.values())) if pkgs else []

    identical = 0
    version_drift, allowed_seen, only_on = [], [], {t: [] for t in targets}
    for name in all_names:
        have = {t: pkgs[t][name] for t in targets if name in pkgs[t]}
        if len(have) < len(targets):
            for t in have:
                only_on[t].append(name)
            continue
        if len(set(have.values())) == 1:
            identical += 1
        elif _matches(name, allowed):
            allowed_seen.append({"name": name, "versions": have})
        else:
            version_drift.append({"name": name, "versions": have})
    required_missing = []
    for name in sorted(set(required_packages or [])):
        missing = [t for t in targets if name not in pkgs[t]]
        if missing:
            required_missing.append({"name": name, "missing_on": missing})

    path_identical, path_drift, path_missing, not_recorded = [], [], [], []
    for path in paths:
        digests = {t: (images[t].get("path_digests") or {}).get(path, NOT_RECORDED) for t in targets}
        if any(d == NOT_RECORDED for d in digests.values()):
            not_recorded.append({"path": path, "targets": [t for t, d in digests.items() if d == NOT_RECORDED]})
            continue
        missing = [t for t, d in digests.items() if d == "missing"]
        if missing:
            path_missing.append({"path": path, "missing_on": missing})
        elif len(set(digests.values())) == 1:
            path_identical.append({"path": path, "digest": next(iter(digests.values()))})
        else:
            path_drift.append({"path": path, "digests": digests})

    unexpected = [f"package {d['name']} differs: " + ", ".join(f"{t}={v}" for t, v in d["versions"].items())
                  for d in version_drift]
    unexpected += [f"package {r['name']} (installed by the template) missing on {', '.join(r['missing_on'])}"
                   for r in required_missing]
    unexpected += [f"path {d['path']} differs: " + ", ".join(f"{t}={v[:19]}" for t, v in d["digests"].items())
                   for d in path_drift]
    unexpected += [f"path {m['path']} missing on {', '.join(m['missing_on'])}" for m in path_missing]
    unexpected += [f"path {n['path']} not recorded on {', '.join(n['targets'])} (rebuild to record it)" for n in not_recorded]
    if strict_packages:
        unexpected += [f"package {n} only on {t}" for t, names in only_on.items() for n in names]
    common = len(all_names) - sum(1 for n in all_names if any(n not in pkgs[t] for t in targets))
    summary = (f"{template}: {len(targets)} targets ({', '.join(targets)}); {identical}/{common} common packages identical, "
               f"{len(version_drift)} differ; {len(path_identical)}/{len(paths)} declared paths identical; "
               + ("no unexpected drift" if not unexpected else f"{len(unexpected)} unexpected difference(s)"))
    return {
        "template": template,
        "targets": targets,
        "fingerprints": {t: images[t].get("fingerprint", "") for t in targets},
        "packages": {
            "common": common,
            "identical": identical,
            "version_drift": version_drift,
            "allowed_drift": allowed_seen,
            "only_on": {t: names for t, names in only_on.items()},
            "required_missing": required_missing,
        },
        "paths": {"identical": path_identical, "drift": path_drift, "missing": path_missing, "not_recorded": not_recorded},
        "unexpected": unexpected,
        "drift": bool(unexpected),
        "summary": summary,
    }
