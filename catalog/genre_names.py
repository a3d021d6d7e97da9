"""Genre tags, in their owners' words, turned into one small vocabulary.

A library's genre tags are inconsistent ("Hip-Hop", "Hip Hop", "Rap", "hiphop",
"(7)", "Rock/Pop"); a model learnt from them needs one name per genre. This is pure
text: splitting multi-valued fields, ID3v1 numeric genres, case and punctuation,
built-in synonyms, and the owner's own mapping file (``genres.toml`` in the data
directory), which wins over the built-in table.

The mapping file (TOML, read with the standard library's ``tomllib``)::

    # any spelling (compared ignoring case, spaces and punctuation) = canonical genre
    [synonyms]
    "Britpop" = "rock"
    "Musical" = "soundtrack"
    "Other" = ""          # an empty name drops the tag: it teaches nothing

A key is looked up for the whole field first ("Rock/Pop" = "rock" keeps it from
being split), then for each part after splitting.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

try:  # the ID3v1 genre table (Winamp extensions included), as mutagen ships it
    from mutagen._constants import GENRES as ID3V1_GENRES
except ImportError:  # pragma: no cover - mutagen is a runtime dependency
    ID3V1_GENRES = []

MAPPING_FILE = "genres.toml"

# The GTZAN head's names, as the shipped model spells them, in this vocabulary.
GTZAN_TO_CANONICAL = {"hiphop": "hip-hop"}

# compact spelling (see :func:`compact`) -> canonical name
SYNONYMS: dict[str, str] = {
    "hiphop": "hip-hop", "rap": "hip-hop", "raphiphop": "hip-hop", "hiphoprap": "hip-hop",
    "gangstarap": "hip-hop", "trap": "hip-hop", "hip": "hip-hop",
    "r&b": "r&b", "rnb": "r&b", "randb": "r&b", "rhythmandblues": "r&b",
    "rhythm&blues": "r&b", "contemporaryr&b": "r&b",
    "rock": "rock", "rockroll": "rock", "rock&roll": "rock", "rockandroll": "rock",
    "rocknroll": "rock", "classicrock": "rock", "hardrock": "rock", "alternativerock": "rock",
    "altrock": "rock", "indierock": "rock", "softrock": "rock", "poprock": "rock",
    "metal": "metal", "heavymetal": "metal", "deathmetal": "metal", "blackmetal": "metal",
    "thrashmetal": "metal", "numetal": "metal", "metalcore": "metal", "powermetal": "metal",
    "classical": "classical", "classic": "classical", "orchestral": "classical",
    "baroque": "classical", "opera": "classical", "chamber": "classical",
    "chambermusic": "classical", "symphony": "classical", "romantic": "classical",
    "jazz": "jazz", "bebop": "jazz", "swing": "jazz", "smoothjazz": "jazz", "fusion": "jazz",
    "acidjazz": "jazz", "bigband": "jazz",
    "blues": "blues", "deltablues": "blues", "chicagoblues": "blues",
    "country": "country", "countrywestern": "country", "country&western": "country",
    "bluegrass": "country", "americana": "country",
    "disco": "disco", "eurodisco": "disco", "nudisco": "disco",
    "pop": "pop", "poppop": "pop", "synthpop": "pop", "dancepop": "pop", "kpop": "pop",
    "jpop": "pop", "europop": "pop", "teenpop": "pop",
    "reggae": "reggae", "roots": "reggae", "rootsreggae": "reggae", "dub": "reggae",
    "ska": "reggae", "dancehall": "reggae", "rocksteady": "reggae",
    "electronic": "electronic", "electronica": "electronic", "electro": "electronic",
    "edm": "electronic", "techno": "electronic", "house": "electronic", "trance": "electronic",
    "dance": "electronic", "idm": "electronic", "drum&bass": "electronic",
    "drumandbass": "electronic", "drumnbass": "electronic", "dnb": "electronic",
    "dubstep": "electronic",
    "ambient": "ambient", "newage": "ambient", "chillout": "ambient",
    "folk": "folk", "folkrock": "folk", "singersongwriter": "folk", "acoustic": "folk",
    "soul": "soul", "neosoul": "soul", "motown": "soul",
    "funk": "funk",
    "punk": "punk", "punkrock": "punk", "hardcore": "punk", "poppunk": "punk",
    "soundtrack": "soundtrack", "ost": "soundtrack", "score": "soundtrack",
    "filmscore": "soundtrack", "gamemusic": "soundtrack", "videogame": "soundtrack",
    "videogamemusic": "soundtrack", "musical": "soundtrack",
    "latin": "latin", "salsa": "latin", "bossanova": "latin", "reggaeton": "latin",
    "world": "world", "worldmusic": "world",
    "gospel": "gospel", "christian": "gospel",
}  # fmt: skip

# Tags that say nothing about the music.
MEANINGLESS = {"", "other", "unknown", "misc", "none", "genre", "various", "n/a", "na", "null"}

_SEPARATORS = re.compile(r"\s*(?:/|;|,|\||\\|\x00)\s*")
_ID3_REFS = re.compile(r"^((?:\(\d{1,3}\))+)(.*)$")
_COMPACT_DROP = re.compile(r"[^0-9a-z&]+")
_WORDS = re.compile(r"[^0-9a-z&+]+")


class GenreMappingError(ValueError):
    """The user's mapping file cannot be read; says which file and why."""


def compact(text: str) -> str:
    """The spelling-insensitive key: lower case, no spaces or punctuation but '&'.

    "Hip-Hop", "hip hop" and "HipHop" share ``hiphop``; "R&B" is ``r&b``, "R'n'B" ``rnb``.
    """
    return _COMPACT_DROP.sub("", text.casefold().replace("'", ""))


def _id3_numeric(text: str) -> str:
    """'(17)', '17', '(17)(18)' and '(17)Rock' (ID3v1-era forms) as names: 'Rock',
    'Rock', 'Rock/Techno', 'Rock' (a refinement after the numbers replaces them, as
    ID3v2.3 says)."""
    match = _ID3_REFS.match(text)
    if match:
        refinement = match.group(2).strip()
        if refinement:
            return refinement
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        return "/".join(ID3V1_GENRES[n] if n < len(ID3V1_GENRES) else str(n) for n in numbers)
    if text.isdigit() and int(text) < len(ID3V1_GENRES):
        return ID3V1_GENRES[int(text)]
    return text


def tidy(text: str) -> str:
    """A genre the vocabulary lacks, as one spelling: lower-case words joined by '-'."""
    words = [w for w in _WORDS.split(text.casefold().replace("'", "")) if w]
    return "-".join(words)


def _canonical(part: str, mapping: Mapping[str, str]) -> str | None:
    part = _id3_numeric(part.strip())
    key = compact(part)
    if key in mapping:
        return mapping[key] or None
    if key in MEANINGLESS or part.casefold() in MEANINGLESS:
        return None
    if key in SYNONYMS:
        return SYNONYMS[key]
    name = tidy(part)
    return name or None


def normalise_genres(raw: Iterable[str], mapping: Mapping[str, str] | None = None) -> list[str]:
    """Canonical genres of one file's genre field(s), in tag order, without repeats.

    ``raw`` holds the field's values as the file has them (a multi-valued field is
    several). ``mapping``: compact spelling -> canonical name (see :func:`load_mapping`).
    """
    mapping = mapping or {}
    out: list[str] = []
    for value in raw:
        value = _id3_numeric(str(value).strip())
        whole = compact(value)
        if whole in mapping:
            parts_genres = [mapping[whole] or None]
        else:
            parts_genres = [_canonical(p, mapping) for p in _SEPARATORS.split(value) if p.strip()]
        for genre in parts_genres:
            if genre and genre not in out:
                out.append(genre)
    return out


def canonical_name(name: str, mapping: Mapping[str, str] | None = None) -> str | None:
    """One genre name (a model's label, a user's ``--genre``) in this vocabulary."""
    found = normalise_genres([GTZAN_TO_CANONICAL.get(name, name)], mapping)
    return found[0] if found else None


def load_mapping(path: Path) -> dict[str, str]:
    """The user's synonyms from a TOML mapping file; {} when the file does not exist.

    Raises :class:`GenreMappingError` (with the file and the reason) when it exists
    but is not a ``[synonyms]`` table of strings: a silent fallback would relabel a
    library differently from what its owner wrote.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise GenreMappingError(f"cannot read the genre mapping {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GenreMappingError(f"the genre mapping {path} is not valid TOML: {exc}") from None
    table = data.get("synonyms", {})
    if not isinstance(table, dict):
        raise GenreMappingError(f"the genre mapping {path}: [synonyms] must be a table")
    mapping: dict[str, str] = {}
    for spelling, genre in table.items():
        if not isinstance(genre, str):
            raise GenreMappingError(
                f"the genre mapping {path}: {spelling!r} must map to a string, not {genre!r}"
            )
        target = SYNONYMS.get(compact(genre), tidy(genre)) if genre.strip() else ""
        mapping[compact(spelling)] = target
    return mapping
