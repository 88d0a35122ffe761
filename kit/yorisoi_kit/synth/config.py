"""Scales, calendar and the behavioural parameters of the synthetic brand.

Every knob the generator turns is here, so a reader can see what the brand looks like without
reading the sampling code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

SCALES: dict[str, int] = {"XS": 1_000, "S": 20_000, "M": 200_000, "L": 2_000_000}

DAY = 86_400
JST = 9 * 3_600  # offset added to UTC seconds to get Japan wall-clock time
DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=9)  # 2026-11-01 00:00 JST
WINDOW_DAYS = 730

# Share of people per behaviour segment. "none" registered or followed on LINE but never bought.
# Tuned so that F1→F2 lands near 40 %, F2→F3 near 60 % and orders per person near 9.
SEGMENTS: dict[str, float] = {
    "none": 0.08,
    "one_time": 0.46,
    "two_time": 0.11,
    "occasional": 0.11,
    "regular": 0.10,
    "subscriber": 0.07,
    "loyal": 0.07,
}


@dataclass(frozen=True)
class Behaviour:
    mean_gap_days: float  # mean days between repeat orders while active
    mean_life_days: float  # mean active lifetime after the first order (exponential)
    max_repeats: int | None = None  # "two_time" buyers come back exactly once, then lapse


BEHAVIOUR: dict[str, Behaviour] = {
    "two_time": Behaviour(mean_gap_days=60, mean_life_days=0, max_repeats=1),
    "occasional": Behaviour(mean_gap_days=70, mean_life_days=160),
    "regular": Behaviour(mean_gap_days=24, mean_life_days=500),
    "subscriber": Behaviour(mean_gap_days=30, mean_life_days=700),
    "loyal": Behaviour(mean_gap_days=4.5, mean_life_days=1200),
}
SUBSCRIPTION_CYCLES = np.array([30, 30, 30, 45, 60])

# Presence of a person in each source system.
P_ECOMMERCE = 0.72
P_OMS = 0.30
P_POS = 0.22
P_LINE_FRIEND = 0.32
P_LINE_LINKED = 0.55  # of LINE friends who also have an e-commerce account
# Real-world mess.
P_EC_DUPLICATE_ACCOUNT = 0.04
P_OMS_DUPLICATE_CUSTOMER = 0.03
P_POS_REISSUED_CARD = 0.05
P_CHANGED_EMAIL = 0.08
P_HAS_EMAIL = 0.93
P_HAS_MOBILE = 0.9
P_HOUSEHOLD_LANDLINE = 0.35
P_FAMILY_SHARED_EMAIL = 0.12  # of multi-person households: members give the head's email to the OMS
P_BARGAIN_HUNTER = 0.25
N_TEST_ACCOUNTS_MIN = 3

# Orders.
P_CANCELLED = 0.03
P_RETURNED = 0.02
P_LATE_CORRECTION = 0.01  # old OMS orders touched again by the back office
P_USE_ALL_POINTS = 0.15
POINTS_RATE = 0.01
FREE_SHIPPING_FROM = 5_000
SHIPPING_FEE = 550
PENDING_DAYS = 3  # orders in the last days before as_of are not shipped yet

# Sale windows as (month, day) ranges in JST, repeated every year.
SALE_WINDOWS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((1, 1), (1, 7)),  # 初売り / winter sale
    ((3, 20), (3, 31)),  # spring sale
    ((7, 1), (7, 14)),  # summer sale
    ((11, 21), (11, 30)),  # Black Friday
    ((12, 26), (12, 31)),  # year-end sale
)

# Consent (per channel). Email needs explicit opt-in (特定電子メール法); DM is opt-out (sent
# unless the customer asks to stop); LINE consent is the friend relation itself.
P_EMAIL_OPT_IN_EC = 0.55
P_EMAIL_OPT_IN_OMS = 0.30
P_SMS_OPT_IN = 0.15
P_DM_PERMISSION = 0.85
P_CALL_PERMISSION = 0.60
P_EMAIL_UNSUBSCRIBE_CALL = 0.03
P_DM_STOP = 0.08
P_CALL_STOP = 0.05
P_SMS_STOP = 0.10
P_LINE_BLOCK = 0.20
P_LINE_REFOLLOW = 0.25  # of blockers
P_EMAIL_REOPT_IN = 0.15  # of email opt-outs
P_BLACKLIST = 0.003
P_ERASURE = 0.002

# Campaigns (past sends from the email provider).
N_EMAIL_CAMPAIGNS = 16
CAMPAIGN_MONTHS = 8
CAMPAIGN_REACH = 0.35  # share of the deliverable list a campaign targets
CONTROL_SHARE = 0.10
P_BOUNCE = 0.03
P_OPEN = 0.28
P_CLICK_GIVEN_OPEN = 0.15
P_UNSUBSCRIBE = 0.004

WEB_EVENT_DAYS = 90


def as_of_seconds(as_of: datetime | None) -> int:
    """UTC epoch seconds of the (exclusive) end of the window."""
    return int((as_of or DEFAULT_AS_OF).timestamp())


def sale_day_mask(day_starts_utc: np.ndarray) -> np.ndarray:
    """True for days (given as UTC epoch seconds of JST midnight) inside a sale window."""
    jst = (day_starts_utc + JST).astype("datetime64[s]").astype("datetime64[D]")
    month = (jst.astype("datetime64[M]").astype(int) % 12) + 1
    day = (jst - jst.astype("datetime64[M]")).astype(int) + 1
    md = month * 100 + day
    mask = np.zeros(len(day_starts_utc), dtype=bool)
    for (m0, d0), (m1, d1) in SALE_WINDOWS:
        mask |= (md >= m0 * 100 + d0) & (md <= m1 * 100 + d1)
    return mask


def day_intensity(day_starts_utc: np.ndarray) -> np.ndarray:
    """Relative order intensity per day: gift season, sales, a quiet February and August."""
    jst = (day_starts_utc + JST).astype("datetime64[s]").astype("datetime64[D]")
    month = (jst.astype("datetime64[M]").astype(int) % 12) + 1
    dow = (jst.astype(int) + 3) % 7  # 0 = Monday
    w = np.ones(len(day_starts_utc))
    w[month == 12] = 1.6
    w[(month == 2) | (month == 8)] = 0.8
    w[month == 6] = 1.15  # summer gifts (お中元)
    w[sale_day_mask(day_starts_utc)] *= 1.5
    w[dow >= 5] *= 1.15
    return w


# Hour-of-day profile (JST) of online and phone orders: lunch and late evening peaks.
HOUR_WEIGHTS = np.array(
    [2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 6, 5, 4.5, 4.5, 4.5, 5, 5.5, 6, 7, 8, 7, 4],
    dtype=float,
)
STORE_HOUR_WEIGHTS = np.array(
    [0] * 10 + [3, 5, 7, 6, 5, 5, 6, 7, 8, 6, 3] + [0] * 3,
    dtype=float,
)
