"""Bad requests for every route of the service: traversal strings, odd ids, bad values.

Shared by ``tests/test_web_hardening.py`` (each must answer below 500 and leak
nothing) and ``bench/torture.py`` (the same, counted, against ``sonic serve``).
"""

from __future__ import annotations

BAD_VALUES = (
    "abc", "-1", "0", "99999999999999999999", "1e999", "nan", "..%2f..%2fetc%2fpasswd",
    "%2e%2e", "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%00", "%FF%FE", "",
)  # fmt: skip
UI_PROBES = (
    "/ui/gradio_api/file=/etc/passwd", "/ui/gradio_api/file=..%2f..%2f..%2fetc%2fpasswd",
    "/ui/..%2f..%2f..%2fetc%2fpasswd", "/ui/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/ui/gradio_api/call/analyse/..%2f..%2fetc", "/ui/static/..%2f..%2fetc%2fpasswd",
)  # fmt: skip
# Bytes that only a file from outside the library could put in an answer.
LEAK_MARKERS = (b"root:", b"SQLite format")


def route_probes(app, valid: dict[str, str]) -> list[tuple[str, str]]:
    """(method, url) pairs: each route with one bad path parameter or query value at a time.

    ``valid`` gives a good value for each path parameter name (track_id, other_id,
    job_id, stem), so that only the one under test is wrong.
    """
    probes: list[tuple[str, str]] = [("GET", p) for p in UI_PROBES]
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        names = [p.name for p in getattr(getattr(route, "dependant", None), "path_params", [])]
        queries = [p.alias for p in getattr(getattr(route, "dependant", None), "query_params", [])]
        for method in methods:
            for name in names:  # one bad path parameter at a time, the others valid
                for bad in BAD_VALUES:
                    path = route.path
                    for other in names:
                        path = path.replace(f"{{{other}}}", bad if other == name else valid[other])
                    probes.append((method, path))
            if method == "POST" and "stems" in route.path:
                continue  # a valid id would start a real separation: path probes only
            base = route.path
            for other in names:
                base = base.replace(f"{{{other}}}", valid[other])
            for query in queries:
                for bad in BAD_VALUES:
                    probes.append((method, f"{base}?seed={valid['track_id']}&{query}={bad}"))
    return probes


def leaks(content: bytes) -> bool:
    """Whether an answer carries what only a file outside the library holds."""
    return any(marker in content for marker in LEAK_MARKERS)
