"""Fills README.md's results sections from the committed results files, so no figure is typed by hand.

Between the lines
    <!-- include: PATH -->
    <!-- end include -->
this puts the content of PATH (a markdown file in the repository), without its first '# ' title
line and with its other headings demoted below the README's. Run after a benchmark:

    python scripts/update_readme.py          # rewrite README.md
    python scripts/update_readme.py --check  # exit 1 if README.md is stale (CI)
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- include: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def included(path: str) -> str:
    full = os.path.join(ROOT, path)
    if not os.path.exists(full):
        return f"_({path} has not been generated on this machine yet.)_\n"
    lines = open(full, encoding="utf-8").read().rstrip("\n").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = ["####" + line[2:] if line.startswith("## ") else line for line in lines]
    return "\n".join(out).strip("\n") + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + included(m.group("path")) + m.group(4), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = os.path.join(ROOT, "README.md")
    text = open(readme, encoding="utf-8").read()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md is out of date with the results files: run python scripts/update_readme.py")
            return 1
        return 0
    open(readme, "w", encoding="utf-8").write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
