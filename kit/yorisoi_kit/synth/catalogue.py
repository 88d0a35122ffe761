"""The product catalogue: cosmetics and food, with category, taste and brand (CTB)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# category, brand, base item names, tastes (colour / size / flavour), list price range (yen)
LINES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[int, int]], ...] = (
    (
        "スキンケア",
        "ヨリソイ ボタニカル",
        ("化粧水", "乳液", "美容液", "クリーム", "洗顔フォーム"),
        ("さっぱり 150mL", "しっとり 150mL", "とてもしっとり 150mL", "詰替 300mL"),
        (1_800, 6_800),
    ),
    (
        "メイクアップ",
        "ヨリソイ カラーズ",
        ("リップ", "アイシャドウ", "チーク", "ファンデーション"),
        ("ローズ", "コーラル", "ベージュ", "ブラウン", "レッド"),
        (1_500, 4_800),
    ),
    (
        "ヘアケア",
        "ヨリソイ ボタニカル",
        ("シャンプー", "トリートメント", "ヘアオイル"),
        ("モイスト", "スムース", "ダメージケア"),
        (1_200, 3_600),
    ),
    (
        "ボディケア",
        "ハナノワ",
        ("ボディソープ", "ボディミルク", "ハンドクリーム"),
        ("ラベンダー", "ゆず", "無香料"),
        (900, 2_800),
    ),
    (
        "サプリメント",
        "ヨリソイ ウェルネス",
        ("青汁", "酵素ドリンク", "コラーゲン", "ビタミンC"),
        ("30日分", "90日分"),
        (2_400, 8_900),
    ),
    (
        "食品",
        "ヨリソイ キッチン",
        ("有機ほうじ茶", "国産はちみつ", "玄米グラノーラ", "だし醤油", "季節のジャム"),
        ("プレーン", "いちご", "抹茶", "黒糖", "ゆず"),
        (700, 3_200),
    ),
    (
        "ギフト",
        "ハナノワ",
        ("ギフトセット①", "ギフトセット②", "季節の詰め合わせ"),
        ("S", "M", "L"),
        (3_000, 12_000),
    ),
)


def build_products(rng: np.random.Generator, created_from: int, created_to: int) -> pa.Table:
    """One row per SKU; `popularity` is a Zipf-like weight that makes ABC analysis meaningful."""
    rows: dict[str, list] = {k: [] for k in ("category", "brand", "item", "taste", "price")}
    for category, brand, items, tastes, (lo, hi) in LINES:
        for item in items:
            base = int(rng.integers(lo // 100, hi // 100 + 1)) * 100 - 20  # 1,980-style prices
            for taste in tastes:
                rows["category"].append(category)
                rows["brand"].append(brand)
                rows["item"].append(item)
                rows["taste"].append(taste)
                rows["price"].append(base)
    n = len(rows["price"])
    price = np.array(rows["price"], dtype=np.int64)
    discount = rng.choice([0.7, 0.8, 0.8, 0.9], size=n)
    sale_price = (np.floor(price * discount / 10) * 10).astype(np.int64)
    popularity = 1.0 / np.arange(1, n + 1) ** 0.9
    rng.shuffle(popularity)
    created = np.sort(rng.integers(created_from, created_to, size=n))
    ids = 8_000_000_000_000 + np.arange(1, n + 1)
    skus = [f"YS-{i:05d}" for i in range(1, n + 1)]  # ~100 SKUs: a catalogue, not a hot path
    titles = [f"{b} {it}" for b, it in zip(rows["brand"], rows["item"], strict=True)]
    return pa.table(
        {
            "id": ids,
            "sku": skus,
            "title": titles,
            "vendor": rows["brand"],
            "product_type": rows["category"],
            "variant_title": rows["taste"],
            "price": price,
            "sale_price": sale_price,
            "popularity": popularity,
            "created_at": created,
        }
    )
