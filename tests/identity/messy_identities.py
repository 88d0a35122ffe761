"""A messy customer set for identity resolution, written apart from the synthetic brand.

The brand generator (yorisoi_kit.synth) and the identity rules grew up together, so scoring the
rules on the brand says little about data with other habits. This generator is independent: its
own name lists and readings, its own households and its own ways of getting things wrong, the
same four systems and their export files (the shop's API, the OMS database, the stores' POS and
LINE drops), ingested by the same extractors as a real brand.

What it writes into OUT (a labelled set for `yorisoi eval identity --set OUT`):

    ecommerce/customers.parquet (+ empty orders, order_lines, products)   the shop's API
    oms/oms.sqlite (customers)                                           the OMS database
    sftp/inbox/pos/members_YYYYMMDD.csv, sftp/inbox/line/...             the drops, with manifests
    truth/source_records.parquet    source, source_id, person_id, household_id
    manifest.json                   generator, seed, people, as_of

The habits, each a real brand's:
- Households share a landline, an address and its postal code, often one email, and children's
  and spouses' orders carry a parent's mobile. Twins share a birthday.
- Namesakes: different people with the same kanji name and birthday, or the same common name in
  the same postal area.
- Junk values typed where a field is required: 000-0000-0000, 090-0000-0000, the shop's own
  number, placeholder emails, 〒000-0000 and test addresses.
- Records with only kanji (the shop without furigana), only kana (store cards; operators typing a
  caller's name in kana), kanji variants (髙/高, 齋/斉), readings the reading dictionaries do
  not guess (裕樹 read ヒロキ).
- Missing phones, postal codes and birthdays; typos in emails and postal codes; changed emails on
  second shop accounts; lost store cards replaced with a new number.
- Several export shapes per system: the shop's name split, whole or given-name first; the OMS's
  legacy (full-width, hyphens, 〒) and current shapes; the POS's half-width and full-width kana.

Development seeds (DEV_SEEDS) are for looking at errors and adjusting rules; evaluation seeds
(EVAL_SEEDS) are only ever scored. Run: `python tests/identity/messy_identities.py OUT --seed 1`.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DEV_SEEDS = (11, 12, 13)
EVAL_SEEDS = (901, 902, 903)
GENERATOR = "messy-identities/1"
AS_OF = date(2026, 10, 31)

# (kanji, reading): common surnames, several with a reading a dictionary may not pick.
SURNAMES = [
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("斉藤", "サイトウ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("前田", "マエダ"),
    ("藤田", "フジタ"),
    ("小川", "オガワ"),
    ("後藤", "ゴトウ"),
    ("岡田", "オカダ"),
    ("村上", "ムラカミ"),
    ("長谷川", "ハセガワ"),
    ("近藤", "コンドウ"),
    ("坂本", "サカモト"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("藤井", "フジイ"),
    ("西村", "ニシムラ"),
    ("福田", "フクダ"),
    ("太田", "オオタ"),
    ("三浦", "ミウラ"),
    ("藤原", "フジワラ"),
    ("岡本", "オカモト"),
    ("松田", "マツダ"),
    ("中川", "ナカガワ"),
    ("中野", "ナカノ"),
    ("原田", "ハラダ"),
    ("小野", "オノ"),
    ("田村", "タムラ"),
    ("竹内", "タケウチ"),
    ("金子", "カネコ"),
    ("和田", "ワダ"),
    ("中島", "ナカジマ"),
    ("工藤", "クドウ"),
    ("河野", "コウノ"),
    ("東", "アズマ"),
    ("五十嵐", "イガラシ"),
    ("服部", "ハットリ"),
    ("角田", "ツノダ"),
]
# Kanji variants people and operators write for the same name.
VARIANTS = {"高": "髙", "斉": "齋", "辺": "邊", "崎": "嵜", "沢": "澤", "島": "嶋"}
MALE = [
    ("裕樹", "ヒロキ"),
    ("裕樹", "ユウキ"),
    ("修平", "シュウヘイ"),
    ("満", "ミツル"),
    ("翔太", "ショウタ"),
    ("大輔", "ダイスケ"),
    ("健太", "ケンタ"),
    ("拓也", "タクヤ"),
    ("直樹", "ナオキ"),
    ("和也", "カズヤ"),
    ("誠", "マコト"),
    ("浩二", "コウジ"),
    ("健一", "ケンイチ"),
    ("隆", "タカシ"),
    ("博", "ヒロシ"),
    ("翔", "カケル"),
    ("蓮", "レン"),
    ("陽翔", "ハルト"),
    ("大翔", "ヒロト"),
    ("悠真", "ユウマ"),
    ("湊", "ミナト"),
    ("学", "マナブ"),
    ("剛", "ツヨシ"),
    ("亮", "リョウ"),
    ("達也", "タツヤ"),
    ("優", "マサル"),
    ("一郎", "イチロウ"),
    ("正人", "マサト"),
    ("勇気", "ユウキ"),
    ("祐介", "ユウスケ"),
]
FEMALE = [
    ("陽子", "ヨウコ"),
    ("恵子", "ケイコ"),
    ("裕子", "ユウコ"),
    ("裕子", "ヒロコ"),
    ("美咲", "ミサキ"),
    ("結衣", "ユイ"),
    ("陽菜", "ヒナ"),
    ("葵", "アオイ"),
    ("さくら", "サクラ"),
    ("愛", "アイ"),
    ("真由美", "マユミ"),
    ("智子", "トモコ"),
    ("直美", "ナオミ"),
    ("由美子", "ユミコ"),
    ("明美", "アケミ"),
    ("久美子", "クミコ"),
    ("花子", "ハナコ"),
    ("彩", "アヤ"),
    ("千尋", "チヒロ"),
    ("舞", "マイ"),
    ("香織", "カオリ"),
    ("美穂", "ミホ"),
    ("麻衣", "マイ"),
    ("凛", "リン"),
    ("芽依", "メイ"),
    ("幸子", "サチコ"),
    ("紀子", "ノリコ"),
    ("和子", "カズコ"),
    ("純子", "ジュンコ"),
    ("優子", "ユウコ"),
]
# (prefecture, city, postal prefix, landline area code)
PLACES = [
    ("東京都", "世田谷区", "15", "03"), ("東京都", "練馬区", "17", "03"),
    ("神奈川県", "横浜市港北区", "22", "045"), ("大阪府", "大阪市北区", "53", "06"),
    ("愛知県", "名古屋市中区", "46", "052"), ("福岡県", "福岡市博多区", "81", "092"),
    ("北海道", "札幌市中央区", "06", "011"), ("宮城県", "仙台市青葉区", "98", "022"),
    ("埼玉県", "さいたま市浦和区", "33", "048"), ("千葉県", "船橋市", "27", "047"),
    ("兵庫県", "神戸市中央区", "65", "078"), ("京都府", "京都市左京区", "60", "075"),
]  # fmt: skip
TOWNS = ["本町", "中央", "栄町", "緑町", "桜台", "旭町", "若葉", "東町", "西町", "南台"]
BUILDINGS = ["", "", "", "コーポ青葉101", "メゾン桜202", "グランドハイツ305", "サンライズ408"]
DOMAINS = ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "outlook.jp"]
TYPO_DOMAINS = {"gmail.com": "gmial.com", "yahoo.co.jp": "yahoo.co.jb", "icloud.com": "icoud.com"}
JUNK_PHONES = ["000-0000-0000", "090-0000-0000", "0000000000", "03-0000-0000", "0120-123-456"]
JUNK_EMAILS = ["none@none.jp", "test@test.com", "noemail@example.com"]
JUNK_POSTAL = ["000-0000", "100-0001"]
TEST_ADDRESS = ("東京都", "千代田区", "テスト1-1")

_HALF = dict(
    zip(
        "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンァィゥェォッャュョー",
        "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｧｨｩｪｫｯｬｭｮｰ",
        strict=True,
    )
)
_DAKUTEN = {"ガ": "ｶﾞ", "ギ": "ｷﾞ", "グ": "ｸﾞ", "ゲ": "ｹﾞ", "ゴ": "ｺﾞ", "ザ": "ｻﾞ", "ジ": "ｼﾞ", "ズ": "ｽﾞ",
            "ゼ": "ｾﾞ", "ゾ": "ｿﾞ", "ダ": "ﾀﾞ", "ヂ": "ﾁﾞ", "ヅ": "ﾂﾞ", "デ": "ﾃﾞ", "ド": "ﾄﾞ", "バ": "ﾊﾞ",
            "ビ": "ﾋﾞ", "ブ": "ﾌﾞ", "ベ": "ﾍﾞ", "ボ": "ﾎﾞ", "パ": "ﾊﾟ", "ピ": "ﾋﾟ", "プ": "ﾌﾟ", "ペ": "ﾍﾟ",
            "ポ": "ﾎﾟ", "ヴ": "ｳﾞ"}  # fmt: skip


def halfwidth(kana: str) -> str:
    return "".join(_DAKUTEN.get(c) or _HALF.get(c, c) for c in kana).replace("　", " ")


def hiragana(kana: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in kana)


@dataclass
class Household:
    id: int
    surname: tuple[str, str]
    place: tuple[str, str, str, str]
    postal: str
    address: str
    landline: str | None
    email: str | None = None


@dataclass
class Person:
    id: int
    household: Household
    surname: tuple[str, str]
    given: tuple[str, str]
    birth: date
    mobile: str | None
    emails: list[str] = field(default_factory=list)
    uses_phone: str | None = None  # the phone this person gives (own mobile, a parent's, the landline)
    records: list[tuple[str, str]] = field(default_factory=list)


class Messy:
    def __init__(self, seed: int, people: int):
        self.r = random.Random(seed)
        self.seed = seed
        self.target = people
        self.households: list[Household] = []
        self.people: list[Person] = []
        self.used_mobiles: set[str] = set()
        self.ec: list[dict] = []
        self.oms: list[dict] = []
        self.pos: list[dict] = []
        self.line_friends: list[dict] = []
        self.line_links: list[dict] = []
        self.truth: list[tuple[str, str, int, int]] = []

    # --- people -----------------------------------------------------------------------------
    def mobile(self) -> str:
        while True:
            n = f"{self.r.choice(['090', '080', '070'])}-{self.r.randint(1000, 9999)}-{self.r.randint(1000, 9999)}"
            if n not in self.used_mobiles:
                self.used_mobiles.add(n)
                return n

    def email(self, year: int) -> str:
        stem = self.r.choice(["hana", "sora", "taro", "yuki", "mori", "kaze", "umi", "aoi", "ren", "mika"])
        sep = self.r.choice(["", ".", "_"])
        return f"{stem}{self.r.randint(1, 9999)}{sep}{year % 100:02d}@{self.r.choice(DOMAINS)}"

    def date_between(self, a: date, b: date) -> date:
        return a + timedelta(days=self.r.randint(0, (b - a).days))

    def make_people(self) -> None:
        r = self.r
        hid = 0
        while len(self.people) < self.target:
            hid += 1
            place = r.choice(PLACES)
            postal = f"{place[2]}{r.randint(0, 9)}-{r.randint(0, 9999):04d}"
            address = f"{place[1]}{r.choice(TOWNS)}{r.randint(1, 9)}-{r.randint(1, 30)}-{r.randint(1, 20)}"
            landline = f"{place[3]}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}" if r.random() < 0.45 else None
            h = Household(hid, r.choice(SURNAMES), place, postal, address + r.choice(BUILDINGS), landline)
            size = r.choices([1, 2, 3, 4, 5], [0.38, 0.3, 0.16, 0.12, 0.04])[0]
            head_birth = self.date_between(date(1945, 1, 1), date(1995, 12, 31))
            members: list[Person] = []
            twins_birth = None
            for k in range(size):
                if k == 0:
                    birth = head_birth
                elif k == 1:
                    birth = head_birth + timedelta(days=r.randint(-2500, 2500))
                else:
                    hi = min(head_birth + timedelta(days=365 * 40), date(2010, 1, 1))
                    lo = min(head_birth + timedelta(days=365 * 20), hi - timedelta(days=365))
                    birth = twins_birth if twins_birth and r.random() < 0.5 else self.date_between(lo, hi)
                    twins_birth = birth
                male = r.random() < (0.5 if k != 1 else 0.2)
                # Parents do not give a child their own name, nor siblings the same one.
                taken = {m.given[0] for m in members} | {m.given[1] for m in members}
                given = r.choice([g for g in (MALE if male else FEMALE) if not taken & set(g)])
                # Grandparents or a spouse who kept their name: another surname in the household.
                surname = h.surname if k == 0 or r.random() > 0.08 else r.choice(SURNAMES)
                has_mobile = r.random() < (0.9 if birth < date(2004, 1, 1) else 0.5)
                p = Person(len(self.people) + 1, h, surname, given, birth, self.mobile() if has_mobile else None)
                p.emails = [self.email(birth.year)] if r.random() < 0.9 else []
                if p.emails and r.random() < 0.25:
                    p.emails.append(self.email(birth.year))  # a changed address
                # The phone this person gives: a household member's mobile is common on orders.
                if members and (p.mobile is None or r.random() < 0.25) and members[0].mobile:
                    p.uses_phone = members[0].mobile
                else:
                    p.uses_phone = p.mobile or h.landline
                members.append(p)
                self.people.append(p)
            if size > 1 and r.random() < 0.3 and members[0].emails:
                h.email = members[0].emails[0]  # the family's shared address
            self.households.append(h)
        # Namesakes: strangers with the same kanji name and birthday (different homes).
        for _ in range(max(2, self.target // 60)):
            a, b = r.sample(self.people, 2)
            home = {m.given for m in self.people[b.id - 1 - 4 : b.id + 4] if m.household is b.household}
            if a.household is not b.household and a.given not in home:
                b.surname, b.given, b.birth = a.surname, a.given, a.birth

    # --- how each system writes a person ----------------------------------------------------
    def kanji(self, p: Person) -> tuple[str, str]:
        last, first = p.surname[0], p.given[0]
        if self.r.random() < 0.04:
            last = "".join(VARIANTS.get(c, c) for c in last)
        return last, first

    def phone_for(self, p: Person, prefer_landline: float) -> str | None:
        r = self.r
        if p.household.landline and r.random() < prefer_landline:
            return p.household.landline
        return p.uses_phone

    def phone_text(self, phone: str | None, shape: str) -> str | None:
        if phone is None:
            return None
        if shape == "digits":
            return phone.replace("-", "")
        if shape == "fullwidth":
            return phone.translate(str.maketrans("0123456789-", "０１２３４５６７８９－"))
        if shape == "intl":
            return "+81 " + phone[1:]
        return phone

    def email_for(self, p: Person, use_old: bool) -> str | None:
        r = self.r
        if p.household.email and r.random() < 0.5:
            return p.household.email
        if not p.emails:
            return None
        e = p.emails[0] if use_old or len(p.emails) == 1 else p.emails[-1]
        local, domain = e.split("@")
        if r.random() < 0.03:
            e = f"{local}@{TYPO_DOMAINS.get(domain, domain)}"
        if r.random() < 0.05:
            e = e.upper() if r.random() < 0.5 else f" {e} "
        return e

    def postal_for(self, p: Person, missing: float) -> str | None:
        r = self.r
        if r.random() < missing:
            return None
        pc = p.household.postal
        if r.random() < 0.02:
            pc = pc[:-1] + str((int(pc[-1]) + 1) % 10)  # a typo
        return pc

    def created(self) -> datetime:
        d = self.date_between(date(2016, 1, 1), AS_OF - timedelta(days=2))
        return datetime(d.year, d.month, d.day, self.r.randint(0, 23), self.r.randint(0, 59), tzinfo=UTC)

    def add_ec(self, p: Person, second: bool = False) -> int:
        r = self.r
        cid = 7_100_000_000_000 + len(self.ec) * 13 + r.randint(1, 12)
        last, first = self.kanji(p)
        lk, fk = p.surname[1], p.given[1]
        shape = r.choices(["split", "whole", "given_first"], [0.8, 0.15, 0.05])[0]
        if r.random() < 0.04:  # typed the name in kana
            last, first = (hiragana(lk), hiragana(fk)) if r.random() < 0.5 else (lk, fk)
        kana_style = r.choices(["katakana", "hiragana", "none", "half"], [0.55, 0.15, 0.25, 0.05])[0]
        if kana_style == "none":
            lk = fk = None
        elif kana_style == "hiragana":
            lk, fk = hiragana(lk), hiragana(fk)
        elif kana_style == "half":
            lk, fk = halfwidth(lk), halfwidth(fk)
        if shape == "whole":
            last, first = f"{last} {first}", ""
            lk, fk = (f"{lk} {fk}", "") if lk else (None, None)
        elif shape == "given_first":
            last, first, lk, fk = first, last, fk, lk
        phone = self.phone_for(p, 0.15) if r.random() < 0.8 else None
        if r.random() < 0.02:
            phone = r.choice(JUNK_PHONES)
        email = self.email_for(p, use_old=not second)
        if email is None or r.random() < 0.01:
            email = r.choice(JUNK_EMAILS)
        zip_, address = self.postal_for(p, 0.05), p.household.address
        province, city = p.household.place[0], p.household.place[1]
        if r.random() < 0.01:
            zip_, (province, city, address) = r.choice(JUNK_POSTAL), TEST_ADDRESS
        at = self.created()
        self.ec.append(
            {
                "id": cid, "email": email, "first_name": first, "last_name": last, "last_name_kana": lk,
                "first_name_kana": fk, "phone": self.phone_text(phone, r.choice(["plain", "digits", "intl"])),
                "created_at": at, "updated_at": at, "state": "enabled", "tags": "",
                "email_marketing_state": r.choice(["subscribed", "not_subscribed"]),
                "email_marketing_opt_in_level": None, "email_marketing_updated_at": None,
                "sms_marketing_state": "not_subscribed", "sms_marketing_updated_at": None,
                "zip": zip_, "province": province, "city": city, "address1": address, "verified_email": True,
            }
        )  # fmt: skip
        self.truth.append(("ecommerce", str(cid), p.id, p.household.id))
        return cid

    def add_oms(self, p: Person) -> None:
        r = self.r
        code = f"K{len(self.oms) + 1:07d}"
        legacy = r.random() < 0.5
        sep = "　" if legacy else r.choice(["", " "])
        last, first = self.kanji(p)
        name = f"{last}{sep}{first}"
        kana = f"{p.surname[1]}{sep}{p.given[1]}" if r.random() < 0.9 else None
        if r.random() < 0.06:  # the operator typed the caller's name in kana
            name = f"{p.surname[1]}{sep}{p.given[1]}"
        phone = self.phone_for(p, 0.5) if r.random() < 0.9 else None
        if r.random() < 0.03:
            phone = r.choice(JUNK_PHONES)
        email = self.email_for(p, use_old=r.random() < 0.5) if r.random() < 0.5 else None
        if r.random() < 0.02:
            email = r.choice(JUNK_EMAILS)
        postal = self.postal_for(p, 0.03)
        address = p.household.address
        if r.random() < 0.01:
            postal, address = r.choice(JUNK_POSTAL), TEST_ADDRESS[1] + TEST_ADDRESS[2]
        if postal and legacy:
            postal = "〒" + postal.translate(str.maketrans("0123456789-", "０１２３４５６７８９－"))
        elif postal:
            postal = postal.replace("-", "")
        at = self.created().astimezone(UTC).replace(tzinfo=None) + timedelta(hours=9)
        phone_shape = ("fullwidth" if r.random() < 0.3 else "plain") if legacy else "digits"
        self.oms.append(
            {
                "customer_code": code, "name_kanji": name, "name_kana": kana,
                "phone": self.phone_text(phone, phone_shape),
                "email": email, "postal_code": postal, "prefecture": p.household.place[0], "address": address,
                "birth_date": p.birth.isoformat() if r.random() < 0.65 else None,
                "gender": None, "mail_permission": 1, "dm_permission": 1, "call_permission": 0,
                "blacklist_flag": 0, "blacklist_reason": None,
                "registered_at": at.strftime("%Y-%m-%d %H:%M:%S"), "updated_at": at.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )  # fmt: skip
        self.truth.append(("oms", code, p.id, p.household.id))

    def add_pos(self, p: Person) -> None:
        r = self.r
        card = f"{2_900_000_000 + len(self.pos) * 7 + r.randint(1, 6)}"
        half = r.random() < 0.7
        kana = f"{p.surname[1]} {p.given[1]}"
        kana = halfwidth(kana) if half else kana.replace(" ", r.choice(["", "　"]))
        phone = self.phone_for(p, 0.4) if r.random() < 0.7 else None
        if r.random() < 0.03:
            phone = r.choice(JUNK_PHONES)
        postal = self.postal_for(p, 0.2)
        if r.random() < 0.02:
            postal = "000-0000"
        email = self.email_for(p, use_old=True) if r.random() < 0.1 else None
        joined = self.created().date()
        self.pos.append(
            {
                "会員番号": card, "氏名カナ": kana,
                "電話番号": self.phone_text(phone, "digits" if half else "plain"),
                "生年月日": p.birth.strftime("%Y/%m/%d") if r.random() < 0.95 else None,
                "郵便番号": postal.replace("-", "") if postal and not half else postal,
                "メールアドレス": email, "入会店舗": r.choice(["S001", "S002", "S003"]),
                "入会日": joined.strftime("%Y/%m/%d"), "更新日": joined.strftime("%Y/%m/%d"),
            }
        )  # fmt: skip
        self.truth.append(("pos", card, p.id, p.household.id))

    def add_line(self, p: Person, ec_id: int | None) -> None:
        r = self.r
        uid = "U" + "".join(r.choice("0123456789abcdef") for _ in range(32))
        at = self.created()
        iso = (at + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S+09:00")
        self.line_friends.append({"line_user_id": uid, "event": "follow", "event_at": iso})
        if ec_id is not None:
            self.line_links.append({"line_user_id": uid, "ec_customer_id": ec_id, "linked_at": iso})
        self.truth.append(("line", uid, p.id, p.household.id))

    def make_records(self) -> None:
        r = self.r
        for p in self.people:
            ec_id = None
            systems = [s for s, prob in (("ec", 0.65), ("oms", 0.35), ("pos", 0.4)) if r.random() < prob]
            if not systems:
                systems = [r.choice(["ec", "oms", "pos"])]
            if "ec" in systems:
                ec_id = self.add_ec(p)
                if r.random() < 0.1:
                    self.add_ec(p, second=True)
            if "oms" in systems:
                self.add_oms(p)
                if r.random() < 0.05:
                    self.add_oms(p)
            if "pos" in systems:
                self.add_pos(p)
                if r.random() < 0.05:
                    self.add_pos(p)  # a lost card replaced
            if r.random() < 0.25:
                self.add_line(p, ec_id if ec_id is not None and r.random() < 0.6 else None)

    # --- files -----------------------------------------------------------------------------
    def write(self, out: Path) -> dict:
        from yorisoi_kit.synth.writers import write_drop

        out.mkdir(parents=True, exist_ok=True)
        shop = out / "ecommerce"
        shop.mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.ec, schema=_EC_SCHEMA), shop / "customers.parquet")
        for name, schema in _EMPTY_SHOP.items():
            pq.write_table(pa.table({c: pa.array([], t) for c, t in schema.items()}), shop / f"{name}.parquet")
        (out / "oms").mkdir(exist_ok=True)
        db = out / "oms" / "oms.sqlite"
        db.unlink(missing_ok=True)
        con = sqlite3.connect(db)
        cols = list(self.oms[0])
        con.execute(f"CREATE TABLE customers ({', '.join(cols)})")
        marks = ", ".join("?" * len(cols))
        con.executemany(f"INSERT INTO customers VALUES ({marks})", [tuple(d.values()) for d in self.oms])
        con.commit()
        con.close()
        inbox = out / "sftp" / "inbox"
        day = AS_OF.strftime("%Y%m%d")
        write_drop(inbox / "pos", f"members_{day}.csv", pa.Table.from_pylist(self.pos), "cp932")
        write_drop(inbox / "line", f"friends_{day[:6]}.csv", pa.Table.from_pylist(self.line_friends), "utf-8-sig")
        write_drop(inbox / "line", f"id_links_{day}.csv", pa.Table.from_pylist(self.line_links), "utf-8-sig")
        (out / "truth").mkdir(exist_ok=True)
        source, source_id, person, household = zip(*self.truth, strict=True)
        pq.write_table(
            pa.table({"source": source, "source_id": source_id, "person_id": person, "household_id": household}),
            out / "truth" / "source_records.parquet",
        )
        manifest = {
            "generator": GENERATOR,
            "seed": self.seed,
            "people": len(self.people),
            "households": len(self.households),
            "records": {s: sum(1 for t in self.truth if t[0] == s) for s in ("ecommerce", "oms", "pos", "line")},
            "as_of": AS_OF.isoformat(),
            "scale": "messy",
        }
        (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", "utf-8")
        return manifest


_TS = pa.timestamp("us", tz="UTC")
_EC_SCHEMA = pa.schema(
    [
        ("id", pa.int64()), ("email", pa.string()), ("first_name", pa.string()), ("last_name", pa.string()),
        ("last_name_kana", pa.string()), ("first_name_kana", pa.string()), ("phone", pa.string()),
        ("created_at", _TS), ("updated_at", _TS), ("state", pa.string()), ("tags", pa.string()),
        ("email_marketing_state", pa.string()), ("email_marketing_opt_in_level", pa.string()),
        ("email_marketing_updated_at", _TS), ("sms_marketing_state", pa.string()), ("sms_marketing_updated_at", _TS),
        ("zip", pa.string()), ("province", pa.string()), ("city", pa.string()), ("address1", pa.string()),
        ("verified_email", pa.bool_()),
    ]
)  # fmt: skip
_EMPTY_SHOP = {
    "orders": {
        "id": pa.int64(), "name": pa.string(), "customer_id": pa.int64(), "email": pa.string(), "created_at": _TS,
        "processed_at": _TS, "updated_at": _TS, "cancelled_at": _TS, "cancel_reason": pa.string(),
        "financial_status": pa.string(), "fulfillment_status": pa.string(), "source_name": pa.string(),
        "subtotal_price": pa.int64(), "total_discounts": pa.int64(), "shipping_price": pa.int64(),
        "points_used": pa.int64(), "points_earned": pa.int64(), "total_price": pa.int64(), "currency": pa.string(),
    },
    "order_lines": {
        "id": pa.int64(), "order_id": pa.int64(), "product_id": pa.int64(), "sku": pa.string(), "title": pa.string(),
        "quantity": pa.int64(), "price": pa.int64(), "compare_at_price": pa.int64(),
    },
    "products": {
        "id": pa.int64(), "sku": pa.string(), "title": pa.string(), "vendor": pa.string(), "product_type": pa.string(),
        "variant_title": pa.string(), "price": pa.int64(), "sale_price": pa.int64(), "created_at": _TS,
        "updated_at": _TS,
    },
}  # fmt: skip


def generate(out: Path, seed: int, people: int = 2000) -> dict:
    """Write the messy set for `seed` into `out` (see the module doc); returns its manifest."""
    m = Messy(seed, people)
    m.make_people()
    m.make_records()
    return m.write(Path(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(generate(args.out, args.seed, args.people), ensure_ascii=False))
