"""Test engine: output no one should have to trust.

    python noisy.py --long-mb 100 --bad-lines 1000   a 100 MB line with no newline, then
                                                      lines of invalid UTF-8, binary junk and
                                                      terminal escapes, then SDK events
    python noisy.py --firehose-mb 200                 60,000-byte lines as fast as the pipe takes them
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MB = 1024 * 1024
FIREHOSE_LINE = 60_000  # long lines, under the supervisor's 64 KiB max_line: the most bytes per inbox item
BAD = [b"\xff\xfe invalid \xc3\x28 utf-8 \xed\xa0\x80", b"\x00\x01\x02 binary \x7f\x80\x9b junk", b"\x1b[2J\x1b]0;retitled\x07 escapes"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--long-mb", type=int, default=0)
    parser.add_argument("--bad-lines", type=int, default=0)
    parser.add_argument("--firehose-mb", type=int, default=0)
    args = parser.parse_args()
    out = sys.stdout.buffer
    if args.long_mb:
        chunk = b"x" * MB
        for _ in range(args.long_mb):
            out.write(chunk)  # no newline anywhere in it
        out.write(b"\n")
    for i in range(args.bad_lines):
        out.write(BAD[i % len(BAD)] + b"\n")
    if args.firehose_mb:
        line = b"y" * (FIREHOSE_LINE - 1) + b"\n"
        for _ in range(args.firehose_mb * MB // len(line)):
            out.write(line)
    out.flush()

    from bus.engine import Engine

    with Engine() as eng:
        eng.log("after the noise")
        eng.result({"long_mb": args.long_mb, "bad_lines": args.bad_lines, "firehose_mb": args.firehose_mb})


if __name__ == "__main__":
    main()
