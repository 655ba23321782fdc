"""Top entries of a py-spy speedscope profile (self and inclusive time).

python3 -m tests.bench.profile_top PROFILE.json [--limit 15]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def _name(frame: dict[str, str]) -> str:
    return f"{frame['name']} ({frame.get('file', '')}:{frame.get('line', '')})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--limit", type=int, default=15)
    parser.add_argument("--match", default="shoal/", help="inclusive rows only for frames containing this")
    args = parser.parse_args()
    with open(args.profile) as f:
        data = json.load(f)
    frames = data["shared"]["frames"]
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            names = [_name(frames[i]) for i in stack]
            if not names or "select" in names[-1] or "wait" in names[-1].lower():
                continue  # idle
            total += weight
            own[names[-1]] += weight
            for name in set(names):
                incl[name] += weight
    print(f"busy samples: {total}")
    print("self time:")
    for name, w in own.most_common(args.limit):
        print(f"  {w / total:6.1%}  {name}")
    print("inclusive time (our code):")
    shown = 0
    for name, w in incl.most_common():
        if args.match in name:
            print(f"  {w / total:6.1%}  {name}")
            shown += 1
            if shown >= args.limit:
                break


if __name__ == "__main__":
    main()
