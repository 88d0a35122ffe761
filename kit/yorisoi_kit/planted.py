"""Planted campaigns: campaigns whose true effects are known, so the campaign readout can be
checked against the truth (docs/campaign-measurement.md).

An additive layer over a built brand: the people and orders the generator made (and the CLV model
fits on) stay as they are. Planting reads the warehouse (who exists, who ordered when), then
writes what the systems would have recorded had the campaigns run:

* the activation store: members (group, variant) and the send ledger, as an audience run would;
* the email provider's log for the email test (campaigns.csv rewritten with the planted campaign,
  and a sends file): B's click rate is 20 % above A's;
* the OMS: the extra orders the DM caused, 3 points of 90-day conversion among those mailed,
  added to the back office with an update time inside the ingest's overlap, as a late entry;
  most of them quote the DM's coupon code (seed campaign_coupon_codes), the rest do not;
* ``truth/planted_campaigns.json``: each campaign's design and true effects.

The four campaigns: an email A/B test (B lifts CTR 20 % relative, no effect on orders), a DM
with a 50 % holdout (+3 points of 90-day conversion), an SMS with no effect at all, and a LINE
push whose randomisation is broken (half its control group dropped after assignment) that the
sample-ratio check must catch.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from yorisoi.activation.delivery.store import ActivationStore, Change, Claim

from .synth import config as c
from .synth.writers import iso_jst, write_drop

PLANTED_RUN = "planted"
ESP_CAMPAIGN_BASE = 900
ESP_SEND_BASE = 900_000_000
BASE_CTR = 0.04  # clicks per delivered email in variant A
QUOTES_COUPON = 0.7  # share of the orders a DM caused that quote its coupon code


@dataclass(frozen=True)
class Plant:
    audience: str
    destination: str
    channel: str
    days_before: int  # assigned this many days before the brand's as-of day
    holdout: float
    variants: dict[str, float] = field(default_factory=lambda: {"A": 1.0})
    population: str = "all"  # all | ecommerce (has a shop account) | oms (has a back-office record)
    reach: float = 0.6  # share of the population the audience selects
    ctr_lift_b: float = 0.0  # relative lift of B's click rate over A's
    conversion_points: float = 0.0  # added to treatment's conversion within `window_days`
    window_days: int = 90
    control_kept: float = 1.0  # < 1: the broken randomisation (control rows dropped)
    coupon_code: str | None = None  # printed on the piece: dbt_project/seeds/campaign_coupon_codes.csv

    def expected_shares(self) -> dict[str, float]:
        shares = {"control": self.holdout}
        shares.update({v: (1 - self.holdout) * w for v, w in self.variants.items()})
        return shares


PLANTS = (
    Plant("planted_email_ab", "esp_list", "email", 130, 0.10, {"A": 0.5, "B": 0.5}, "ecommerce", ctr_lift_b=0.20),
    Plant(
        "planted_dm",
        "dm_file",
        "dm",
        150,
        0.50,
        population="oms",
        reach=0.9,
        conversion_points=0.03,
        coupon_code="PLANTEDDM",
    ),
    Plant("planted_sms_null", "sms_api", "sms", 120, 0.20),
    Plant("planted_line_broken", "line_push", "line", 110, 0.20, control_kept=0.5),
)


def _people(con: duckdb.DuckDBPyConnection, population: str) -> tuple[np.ndarray, np.ndarray]:
    """(person_id, source id) of the population, one row per person, in a stable order."""
    if population == "all":
        ids = con.execute("select person_id from marts.dim_customers order by person_id").fetchnumpy()["person_id"]
        return np.asarray(ids, dtype=object), np.asarray(ids, dtype=object)
    rows = con.execute(
        "select person_id, min(source_id) as source_id from marts.bridge_customer_identities "
        "where source = ? group by person_id order by person_id",
        [population],
    ).fetchnumpy()
    return np.asarray(rows["person_id"], dtype=object), np.asarray(rows["source_id"], dtype=object)


def _assign(rng: np.random.Generator, plant: Plant, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selected rows, group, variant) for the audience."""
    rows = np.flatnonzero(rng.random(n) < plant.reach)
    control = rng.random(len(rows)) < plant.holdout
    names = list(plant.variants)
    weights = np.array([plant.variants[v] for v in names])
    variant = np.array(names, dtype=object)[rng.choice(len(names), size=len(rows), p=weights / weights.sum())]
    kept = ~control | (rng.random(len(rows)) < plant.control_kept)
    group = np.where(control, "control", "treatment")
    return rows[kept], group[kept], np.where(control, None, variant)[kept]


def _record_sends(
    store: ActivationStore, plant: Plant, people: np.ndarray, assigned_at: datetime, rng: np.random.Generator
) -> np.ndarray:
    """Claim and settle the treatment's sends (2 % fail); returns which of `people` were sent."""
    interval = assigned_at.isoformat()
    sync_run = f"{PLANTED_RUN}:{plant.audience}:{plant.destination}"
    at = assigned_at + timedelta(minutes=5)
    keys = [f"{p}:{plant.channel}" for p in people]
    person_ids = [str(p) for p in people]
    store.start_run(
        sync_run, audience=plant.audience, destination=plant.destination, interval=interval, mode="diff", started_at=at
    )
    store.claim(
        audience=plant.audience, destination=plant.destination, channel=plant.channel, interval=interval,
        keys=keys, person_ids=person_ids, claim_id="c1", owner=sync_run, now=at,
    )  # fmt: skip
    sent = rng.random(len(people)) >= 0.02
    ok = np.flatnonzero(sent)
    store.settle(
        run_id=sync_run, audience=plant.audience, destination=plant.destination, operation="add",
        at=at + timedelta(minutes=5), keys=[keys[i] for i in ok], person_ids=[person_ids[i] for i in ok],
        others=[Change(keys[i], person_ids[i], "failed", "500", "server error") for i in np.flatnonzero(~sent)],
        claim=Claim(plant.channel, interval, sync_run, "c1", whole_group=True),
    )  # fmt: skip
    store.finish_run(
        sync_run,
        status="succeeded",
        counts={"adds": len(ok), "delivered": len(ok)},
        finished_at=at + timedelta(minutes=6),
    )
    return sent


def _esp_log(
    rng: np.random.Generator, plant: Plant, k: int, ec_ids: np.ndarray, variants: np.ndarray, sent_at: int
) -> pa.Table:
    """The provider's per-recipient log for the email test: 3 % bounce, 30 % open (a tenth of
    the delivered opened by mail-privacy prefetch within seconds), clicks at BASE_CTR for A and
    BASE_CTR x (1 + ctr_lift_b) for B."""
    m = len(ec_ids)
    at = sent_at + rng.integers(1, 120, size=m)
    delivered = rng.random(m) >= 0.03
    ctr = np.where(variants == "B", BASE_CTR * (1 + plant.ctr_lift_b), BASE_CTR)
    clicked = delivered & (rng.random(m) < ctr)
    machine = delivered & (rng.random(m) < 0.10)
    opened = delivered & (clicked | machine | (rng.random(m) < 0.30))
    opened_at = np.where(machine, at + rng.integers(0, 5, size=m), at + rng.integers(120, 2 * c.DAY, size=m))
    clicked_at = opened_at + rng.integers(30, 600, size=m)
    return pa.table(
        {
            "send_id": ESP_SEND_BASE + 1_000_000 * k + np.arange(m),
            "campaign_id": np.full(m, ESP_CAMPAIGN_BASE + k),
            "ec_customer_id": ec_ids.astype(np.int64),
            "email": pa.array([f"planted{i}@example.jp" for i in ec_ids]),
            "variant": pa.array(list(variants)),
            "sent_at": iso_jst(at),
            "delivered": delivered,
            "bounce_type": pa.array(np.where(delivered, None, "soft").tolist(), type=pa.string()),
            "opened_at": iso_jst(np.where(opened, opened_at, -1)),
            "clicked_at": iso_jst(np.where(clicked, clicked_at, -1)),
            "unsubscribed_at": iso_jst(np.full(m, -1)),
        }
    )


def _extra_orders(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    plant: Plant,
    people: np.ndarray,
    customer_codes: np.ndarray,
    treated: np.ndarray,
    assigned_at: datetime,
) -> tuple[np.ndarray, np.ndarray]:
    """The orders the campaign caused: among treated people who did not convert on their own
    within the window, each converts with q = points / (1 - p0), p0 the audience's own
    conversion, so treatment's expected conversion is p0 + points. Returns (customer code,
    order time in epoch seconds)."""
    end = assigned_at + timedelta(days=plant.window_days)
    con.register("audience_people", pa.table({"person_id": pa.array(list(people), type=pa.string())}))
    converted = set(
        con.execute(
            "select distinct o.person_id from marts.fct_orders as o inner join audience_people using (person_id) "
            "where o.is_counted and o.ordered_at >= ? and o.ordered_at < ?",
            [assigned_at, end],
        ).fetchnumpy()["person_id"]
    )
    con.unregister("audience_people")
    natural = np.array([p in converted for p in people])
    p0 = natural.mean()
    q = plant.conversion_points / (1 - p0)
    caused = treated & ~natural & (rng.random(len(people)) < q)
    start = int(assigned_at.timestamp())
    at = start + rng.integers(c.DAY, (plant.window_days - 5) * c.DAY, size=int(caused.sum()))
    return customer_codes[caused], at


def _write_oms_orders(
    oms: Path, codes: np.ndarray, at: np.ndarray, coupons: np.ndarray, recorded_at: int, rng: np.random.Generator
) -> int:
    """Append orders (one line each) to the OMS database, as phone orders answering the DM, each
    quoting its coupon code (or None)."""
    con = sqlite3.connect(oms)
    try:
        items = con.execute("select item_code, list_price from items order by item_code").fetchall()
        pick = rng.integers(0, len(items), size=len(codes))
        jst = lambda s: datetime.fromtimestamp(int(s) + c.JST, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
        updated = jst(recorded_at)
        orders, lines = [], []
        for i, (code, when, coupon) in enumerate(zip(codes, at, coupons, strict=True)):
            number = f"PL{i:08d}"
            item, price = items[pick[i]]
            orders.append(
                (number, code, "phone", None, jst(when), jst(when + 2 * c.DAY), "shipped", price, 0, 0, 0,
                 price // 100, price, updated, coupon)
            )  # fmt: skip
            lines.append((number, 1, item, 1, price, price, price))
        con.executemany("insert into orders values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", orders)
        con.executemany("insert into order_lines values (?, ?, ?, ?, ?, ?, ?)", lines)
        con.commit()
    finally:
        con.close()
    return len(orders)


def plant(brand: Path, warehouse: Path, store_url: str, *, seed: int = 7) -> list[dict]:
    """Plant PLANTS into the built brand at `brand` (its warehouse at `warehouse`) and the
    activation store at `store_url`. Returns (and writes to truth/) each campaign's design."""
    manifest = json.loads((brand / "manifest.json").read_text())
    as_of = datetime.fromisoformat(manifest["as_of"]).astimezone(UTC)
    rng = np.random.default_rng(seed)
    truth, esp_tables, esp_campaigns = [], [], []
    extra_codes, extra_at, extra_coupons = [], [], []
    store = ActivationStore(store_url)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for k, p in enumerate(PLANTS, start=1):
            people, source_ids = _people(con, p.population)
            rows, group, variant = _assign(rng, p, len(people))
            assigned_at = as_of - timedelta(days=p.days_before, hours=-1)
            store.write_members(
                {"run_id": f"{PLANTED_RUN}-{p.audience}", "audience": p.audience, "person_id": str(people[i]),
                 "grp": g, "variant": v, "computed_at": assigned_at}
                for i, g, v in zip(rows, group, variant, strict=True)
            )  # fmt: skip
            treated = group == "treatment"
            sent = _record_sends(store, p, people[rows[treated]], assigned_at, rng)
            if p.channel == "email":
                esp_tables.append(
                    _esp_log(rng, p, k, source_ids[rows[treated]][sent], variant[treated][sent],
                             int(assigned_at.timestamp()) + 600)
                )  # fmt: skip
                esp_campaigns.append((ESP_CAMPAIGN_BASE + k, p.audience, int(assigned_at.timestamp()) + 600))
            if p.conversion_points:
                mailed = np.zeros(len(rows), dtype=bool)
                mailed[np.flatnonzero(treated)[sent]] = True
                codes, at = _extra_orders(con, rng, p, people[rows], source_ids[rows], mailed, assigned_at)
                extra_codes.append(codes)
                extra_at.append(at)
                # its own stream: who quotes the code leaves every other draw (and the readout) as it was
                quoted = np.random.default_rng([seed, k]).random(len(codes)) < QUOTES_COUPON
                extra_coupons.append(np.where(quoted, p.coupon_code, None).astype(object))
            truth.append(
                {**asdict(p), "assigned_at": assigned_at.isoformat(), "expected_shares": p.expected_shares(),
                 "members": len(rows)}
            )  # fmt: skip
        existing = con.sql(
            "select campaign_id, name, channel, sent_at, subject_a, subject_b from raw.sftp__esp_campaigns "
            "order by campaign_id"
        ).to_arrow_table()
    finally:
        con.close()
        store.close()
    inbox = brand / "sftp" / "inbox" / "esp"
    planted = pa.table(
        {
            "campaign_id": [x[0] for x in esp_campaigns],
            "name": [x[1] for x in esp_campaigns],
            "channel": ["email"] * len(esp_campaigns),
            "sent_at": iso_jst(np.array([x[2] for x in esp_campaigns])),
            "subject_a": ["【ご案内】今月のおすすめ"] * len(esp_campaigns),
            "subject_b": ["あなたへのおすすめ、届きました"] * len(esp_campaigns),
        }
    )
    old = existing.set_column(
        3, "sent_at", iso_jst(existing["sent_at"].to_numpy().astype("datetime64[s]").astype(np.int64))
    )
    write_drop(inbox, "campaigns.csv", pa.concat_tables([old.cast(planted.schema), planted]), "utf-8")
    write_drop(inbox, "sends_planted.csv", pa.concat_tables(esp_tables), "utf-8")
    if extra_codes:
        recorded = int(as_of.timestamp()) - 3600  # a late entry, inside the OMS ingest's overlap
        _write_oms_orders(
            brand / "oms" / "oms.sqlite",
            np.concatenate(extra_codes),
            np.concatenate(extra_at),
            np.concatenate(extra_coupons),
            recorded,
            rng,
        )
    (brand / "truth" / "planted_campaigns.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), "utf-8")
    return truth


def prepare_planted(scale: str = "XS", *, seed: int = 1, plant_seed: int = 7, console=None):
    """A brand at `scale` with PLANTS, end to end outside Airflow, under var/planted (never the
    shared evaluation brands: planting adds to the brand's files): generate, ingest and build;
    plant; land what planting added (OMS orders, the ESP log, the activation store); build again.
    Returns the ScaleRun; the truth is in <brand>/truth/planted_campaigns.json."""
    import sqlalchemy

    from yorisoi import paths
    from yorisoi.outcomes.store_source import ingest_activation
    from yorisoi.sources.landing import Lake, Warehouse
    from yorisoi.sources.registry import load_registry

    from .scale_run import LOAD_DATE, build, ingest_back_office, ingest_drop_folder, prepare, using_var

    base = paths.var_dir() / "planted"
    with using_var(base):
        run = prepare(scale, seed=seed, console=console)
    brand = run.work / "sources"
    store_url = f"sqlite:///{run.work / 'activation.sqlite'}"
    if not (brand / "truth" / "planted_campaigns.json").exists():
        build(run, quiet=True)
        plant(brand, run.warehouse, store_url, seed=plant_seed)
        wh = Warehouse(run.warehouse, Lake(run.work / "lake"))
        ingest_back_office(brand, wh, PLANTED_RUN, ["orders", "order_lines"])
        ingest_drop_folder(brand, wh, run.work, PLANTED_RUN, ["esp_campaigns", "esp_sends"])
        engine = sqlalchemy.create_engine(store_url)
        try:
            ingest_activation(wh, load_registry().source("activation"), engine, run_id=PLANTED_RUN, load_date=LOAD_DATE)
        finally:
            engine.dispose()
        build(run, quiet=True)
    return run


def planted_truth(run) -> list[dict]:
    """The planted campaigns' designs and effects (written by :func:`plant`)."""
    return json.loads((run.work / "sources" / "truth" / "planted_campaigns.json").read_text("utf-8"))
