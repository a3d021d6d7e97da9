"""The peer in bench/ingest.py: bliss-audio 0.1.6 analysing the same files, N processes.

Run by the bliss virtual environment's Python, never the project's (bliss-audio is
no dependency of Sonic Catalog):

    python -m venv /work/venvs/bliss && /work/venvs/bliss/bin/pip install bliss-audio==0.1.6
    /work/venvs/bliss/bin/python bench/bliss_peer.py FILE_LIST --processes 2

FILE_LIST holds one path a line. bliss' ``Song(path)`` decodes the whole file
(FFmpeg) and computes its 20 features (tempo, timbre, loudness, chroma); the
result is dropped, as a library manager would store it. Prints JSON: files
analysed, failed, and the wall seconds inside this process.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool


def analyse(path: str) -> bool:
    import bliss_audio

    try:
        return len(bliss_audio.Song(path).analysis) > 0
    except BaseException:  # bliss panics (PanicException) on files it cannot decode
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file_list")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    with open(args.file_list, encoding="utf-8") as fh:
        files = [line.rstrip("\n") for line in fh if line.strip()]
    t0 = time.perf_counter()
    with Pool(args.processes) as pool:
        results = list(pool.imap_unordered(analyse, files))
    wall = time.perf_counter() - t0
    print(json.dumps({"analysed": sum(results), "failed": len(results) - sum(results),
                      "wall_s": wall}))  # fmt: skip


if __name__ == "__main__":
    main()
