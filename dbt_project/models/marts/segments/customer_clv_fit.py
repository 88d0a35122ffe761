"""The fitted BG/NBD and Gamma-Gamma parameters of customer_clv, one row per fit (yorisoi.clv).

Fitting is the costly part of the CLV model and its parameters describe the whole population,
which a day of change hardly moves: a build reuses the newest fit made for an as-of day at most
`clv_refit_days` before its own (var, default 7; 0 refits every build) under the same penalizer
setting, unless the customers who bought changed by more than 10 % since (the inputs changed
shape); otherwise it fits on the purchases before `as_of` and adds the fit. Incremental and never
rebuilt (full_refresh false): a --full-refresh predicts with the same stored fit as the
incremental build of that day, so both give the same answer (docs/scale.md).
"""


def _number(value, default):
    """A config value rendered from a var: a number, or the default when unset."""
    return default if value is None or str(value).strip() in ("", "None", "none") else float(value)


def model(dbt, session):
    dbt.config(materialized="incremental", unique_key="fitted_as_of", full_refresh=False)
    from yorisoi import clv

    as_of = clv.as_of_or_today(dbt.config.get("as_of"))
    penalizer = _number(dbt.config.get("clv_penalizer"), 0.0)
    purchases = dbt.ref("int_customer_purchase_days")
    if dbt.is_incremental:
        customers = (
            purchases.filter(f"purchase_date < date '{as_of.isoformat()}'")
            .aggregate("count(distinct person_id)")
            .fetchall()[0][0]
        )
        stored = session.sql(f"select * from {dbt.this}").df()  # noqa: S608 - dbt's own relation
        kept = clv.usable_fit(
            stored,
            as_of,
            penalizer,
            refit_days=int(_number(dbt.config.get("clv_refit_days"), 7)),
            customers=customers,
        )
        if kept is not None:  # written again as it is: the build changes nothing
            return stored.loc[[kept.name]].assign(fitted_as_of=lambda f: f["fitted_as_of"].dt.date)
    return clv.fit_purchases(purchases.df(), as_of, penalizer)
