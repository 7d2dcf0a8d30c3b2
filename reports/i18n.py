"""The translation catalogue (gettext via Babel) for the patient summary.

``reports/locale/<lang>/LC_MESSAGES/messages.po`` is the source. A compiled ``messages.mo``
is used when present and newer; otherwise the .po is compiled in memory, so a checkout works
without a build step. ``python -m reports.i18n`` writes the .mo files for packaging.

Patient texts per recommendation code use symbolic msgids (``code.<code>``,
``medicine.<name>``, ``schedule.<key>``): they live only in the catalogue, in every
language including English, never in the rules.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = ["DOMAIN", "LANGUAGES", "LOCALE_DIR", "compile_catalogues", "pick_language", "translations"]

DOMAIN = "messages"
LANGUAGES = ("en", "es", "de")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def pick_language(language: str | None) -> str:
    return language if language in LANGUAGES else "en"


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    po = po_path(pick_language(language))
    mo = po.with_suffix(".mo")
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fp:
            return Translations(fp, domain=DOMAIN)
    return Translations(BytesIO(_compile(po, language)), domain=DOMAIN)


def _compile(po: Path, language: str) -> bytes:
    with po.open("rb") as fp:
        catalog = read_po(fp, locale=language, domain=DOMAIN)
    buf = BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


def compile_catalogues() -> list[Path]:
    written = []
    for language in LANGUAGES:
        po = po_path(language)
        mo = po.with_suffix(".mo")
        mo.write_bytes(_compile(po, language))
        written.append(mo)
    return written


if __name__ == "__main__":  # pragma: no cover
    for path in compile_catalogues():
        print(path)
