"""The report's words in Japanese and English, from strings.yml (one place for both)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("ja", "en")
STRINGS_FILE = Path(__file__).with_name("strings.yml")


@cache
def _catalogue() -> dict[str, Any]:
    return yaml.safe_load(STRINGS_FILE.read_text(encoding="utf-8"))


class Text:
    """`t("labels.customers")` is that label in the language; `t.label("channels", "store")` is a
    code's label, the code itself when the catalogue has none (a channel added later)."""

    def __init__(self, lang: str):
        if lang not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {lang!r}")
        self.lang = lang

    def __call__(self, key: str, **fields: Any) -> str:
        node: Any = _catalogue()
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"strings.yml has no {key!r}")
            node = node[part]
        if not isinstance(node, dict) or self.lang not in node:
            raise KeyError(f"strings.yml: {key!r} has no {self.lang!r} text")
        text = str(node[self.lang])
        return text.format(**fields) if fields else text

    def label(self, group: str, code: Any) -> str:
        entry = _catalogue().get(group, {}).get(str(code))
        return str(entry[self.lang]) if isinstance(entry, dict) else str(code)

    def money(self, yen: float | None) -> str:
        """A yen amount for a tile: 1億2,345万円 / ¥123.4M."""
        if yen is None:
            return "–"
        if self.lang == "ja":
            if abs(yen) >= 1e8:
                return f"{yen / 1e8:,.2f}億円"
            if abs(yen) >= 1e4:
                return f"{yen / 1e4:,.0f}万円"
            return f"{yen:,.0f}円"
        if abs(yen) >= 1e6:
            return f"¥{yen / 1e6:,.1f}M"
        return f"¥{yen:,.0f}"

    def people(self, n: float | None) -> str:
        if n is None:
            return "–"
        return f"{n:,.0f}人" if self.lang == "ja" else f"{n:,.0f}"

    @property
    def money_scale(self) -> float:
        """Divisor of yen for chart axes: 万円 in Japanese, million yen in English."""
        return 1e4 if self.lang == "ja" else 1e6
