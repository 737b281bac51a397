"""The goldsmith command: `goldsmith gc` reaps what dead builds left; `goldsmith ls` lists images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_gc(args: argparse.Namespace) -> int:
    from . import gc

    orphans = gc.collect(platforms=args.platform or None, older_than=args.older_than, aws_regions=args.aws_region)
    count = gc.reap(orphans, dry_run=args.dry_run)
    print(f"{count} orphaned resource(s) {'found' if args.dry_run else 'removed'}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    for manifest in sorted(Path(args.directory).glob("*.manifest.json")):
        doc = json.loads(manifest.read_text())
        formats = ",".join(doc.get("artifacts", {}))
        print(f"{doc['name']:<24} {doc['fingerprint'][:12]}  {doc['provenance']['built_at']}  {formats}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldsmith", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gc_p = sub.add_parser("gc", help="remove builder VMs, work dirs (and cloud builder resources) left by dead builds")
    gc_p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc_p.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                      help="also treat builds older than this as orphans, even if their owner is alive")
    gc_p.add_argument("--platform", action="append", help="limit to a platform (qemu, ...); repeatable")
    gc_p.add_argument("--aws-region", action="append", metavar="REGION",
                      help="look for AWS builder resources in this region (repeatable; default: $GOLDSMITH_AWS_REGIONS, "
                           "else none); credentials and endpoint from the standard AWS chain")
    gc_p.set_defaults(func=cmd_gc)
    ls_p = sub.add_parser("ls", help="list the images in an output directory")
    ls_p.add_argument("directory", nargs="?", default="images")
    ls_p.set_defaults(func=cmd_ls)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
