"""MB/s of the CP932 → UTF-8 decode every SFTP drop goes through (yorisoi.sources.sftp_files).

    .venv/bin/python bench/cp932_decode_bench.py [--rows 60000] [--repeat 5]

The file is POS sales rows holding the characters CP932 has and Shift_JIS lacks (㈱), written with
CRLF as store systems do. Prints the best and median of the repeats; a decode that drops below
about 50 MB/s on an idle machine would make the L drop folder's decode a visible share of ingest.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from yorisoi.sources.sftp_files import decode_to_utf8

HEADER = (
    "取引番号,明細番号,店舗コード,店舗名,取引日時,取引区分,元取引番号,会員番号,商品コード,数量,単価,定価,金額,"
    "利用ポイント,付与ポイント"
)
ROW = '"{receipt}",1,"S003","㈱ヨリソイ 名古屋栄店","2026/10/01 10:00:00","売上","","","YS-00001",1,1000,1000,1000,0,10'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines = [HEADER] + [ROW.format(receipt=f"R{i:010d}") for i in range(args.rows)]
    data = ("\r\n".join(lines) + "\r\n").encode("cp932")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "sales.csv", Path(tmp) / "sales.utf8.csv"
        src.write_bytes(data)
        seconds = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            decode_to_utf8(src, dst, "cp932")
            seconds.append(time.perf_counter() - t0)
        if dst.read_bytes().decode("utf-8") != data.decode("cp932"):
            raise SystemExit("the decode changed the text")
    mb = len(data) / 1e6
    best, median = mb / min(seconds), mb / statistics.median(seconds)
    print(f"{mb:.1f} MB, {args.rows:,} rows: best {best:.0f} MB/s, median {median:.0f} MB/s")


if __name__ == "__main__":
    main()
