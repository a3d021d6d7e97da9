"""What letting FastAPI validate a hot answer against its pydantic model would cost.

The REST routes name a ``response_model`` (for ``/openapi.json``) but return an
already rendered ``SafeJSONResponse``, so FastAPI neither validates nor re-encodes
the answer (``ui/routes/__init__.py``). This measures the alternative in process,
on answers shaped like the real ones: a track's details with a timeline of 66
segments x 10 genres (a 200 s track), and 10 similar tracks. Per answer, in turns
(median of ``--repeats`` rounds of ``--n`` renders each):

- ``orjson``: ``SafeJSONResponse.render`` alone (what the routes do);
- ``validated``: what FastAPI does with a returned dict: validate it against the
  model, dump it to JSON-able Python, then render it (``TypeAdapter`` of the model;
  ``exclude_unset``, or the dump would add the optional fields a route left out).

    python bench/response_validation.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydantic import TypeAdapter  # noqa: E402

from ui.routes.similar import Similar  # noqa: E402
from ui.routes.tracks import TrackDetails  # noqa: E402
from ui.safe_json import SafeJSONResponse  # noqa: E402

GENRES = ["blues", "classical", "country", "disco", "hiphop",
          "jazz", "metal", "pop", "reggae", "rock"]  # fmt: skip


def summary(i: int) -> dict:
    return {"id": i, "path": f"/music/a/{i:07d}.flac", "title": f"Track {i}",
            "artist": "Artist", "album": "Album", "track_number": 3, "duration_s": 200.0,
            "status": "ok", "genre": "jazz", "confidence": 0.81, "error": None,
            "warning": None}  # fmt: skip


def details(i: int = 1) -> dict:
    probs = {g: 0.1 for g in GENRES}
    timeline = [{"index": s, "start_s": 3.0 * s, "end_s": 3.0 * s + 3, "genre": "jazz",
                 "confidence": 0.5, "probabilities": dict(probs)} for s in range(66)]  # fmt: skip
    views = {"tag": {"genres": ["jazz"], "raw": ["Jazz"]}, "library": None,
             "gtzan": {"genre": "jazz", "predicted": "jazz", "confidence": 0.81,
                       "threshold": 0.4, "uncertain": False, "canonical": "jazz"}}  # fmt: skip
    return {**summary(i), "size": 5_000_000, "mtime_ns": 1_700_000_000_000_000_000,
            "content_hash": "ab" * 16, "format": "flac", "sample_rate": 44100, "channels": 2,
            "model_id": "m", "n_segments": 66, "analysed_at": "2024-01-01T00:00:00",
            "added_at": "2024-01-01T00:00:00", "in_index": True, "probabilities": probs,
            "timeline": timeline,
            "explanation": {"genre": "jazz", "heatmap": None, "window_s": [0.0, 3.0],
                            "band_focus": {"low": 0.2, "mid": 0.5, "high": 0.3},
                            "sentence": "mid"},
            "genre_views": views,
            "artefacts": {"audio": "/music/a/1.flac", "heatmap": None, "stems": {}},
            "audio_url": "/tracks/1/audio", "heatmap_url": None, "band_focus": "mid",
            "explanations_available": True, "stems": {}, "stems_available": True}  # fmt: skip


def similar() -> dict:
    rows = [{**summary(i), "score": 0.9, "url": f"/tracks/{i}", "audio_url": f"/tracks/{i}/audio"}
            for i in range(2, 12)]  # fmt: skip
    return {"track_id": 1, "neighbours": rows}


def per_call_us(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    render = SafeJSONResponse.render.__get__(SafeJSONResponse(None))
    out = {}
    for name, model, data in (("GET /tracks/{id}", TrackDetails, details()),
                              ("GET /tracks/{id}/similar", Similar, similar())):  # fmt: skip
        adapter = TypeAdapter(model)

        def validated(adapter=adapter, data=data) -> bytes:
            return render(
                adapter.dump_python(adapter.validate_python(data), mode="json", exclude_unset=True)
            )

        assert json.loads(validated()) == json.loads(render(data))
        plain, checked = [], []
        for _ in range(args.repeats):
            plain.append(per_call_us(lambda data=data: render(data), args.n))
            checked.append(per_call_us(validated, args.n))
        p, c = statistics.median(plain), statistics.median(checked)
        out[name] = {"orjson_us": round(p, 1), "validated_us": round(c, 1),
                     "ratio": round(c / p, 1)}  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
