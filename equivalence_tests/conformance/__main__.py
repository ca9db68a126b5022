"""``python -m equivalence_tests.conformance MODULE:ADAPTER [MODULE:ADAPTER ...]``: run the kit, print the
report table, exit 1 when a property fails (or an adapter raises), 0 otherwise, 2 for bad arguments."""

from __future__ import annotations

import argparse
import json
import sys

from equivalence_tests.conformance import AdapterError, check, load_adapter, reproduce


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence_tests.conformance", description=__doc__)
    parser.add_argument("adapters", nargs="+", metavar="MODULE:ADAPTER")
    parser.add_argument("--max-examples", type=int, default=None, help="examples per property (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized)")
    parser.add_argument("--property", action="append", dest="only", help="run only this property (repeatable)")
    parser.add_argument("--example", default=None, help="with one --property: rerun this JSON example only")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the report(s) as JSON")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="write the report(s) as Markdown")
    args = parser.parse_args(argv)
    try:
        adapters = [load_adapter(spec) for spec in args.adapters]
        if args.example is not None:
            if not args.only or len(args.only) != 1 or len(adapters) != 1:
                raise AdapterError("--example: give exactly one adapter and one --property")
            reproduce(adapters[0], args.only[0], json.loads(args.example))
            print(f"{args.only[0]}: holds on this example")
            return 0
        reports = [check(a, max_examples=args.max_examples, seed=args.seed, only=args.only) for a in adapters]
    except (AdapterError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(report.table())
        print()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(r.to_json() for r in reports) + "\n]\n")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write("\n".join(r.to_markdown() for r in reports))
    return 0 if all(r.passed for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
