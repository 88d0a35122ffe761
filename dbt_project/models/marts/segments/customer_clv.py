"""Predicted customer lifetime value per person: BG/NBD + Gamma-Gamma (yorisoi.clv, lifetimes).

A dbt Python model: it runs in the dbt process (dbt-duckdb), reads int_customer_purchase_days as
pandas and predicts, one row per person, from every person's purchase days before `as_of` with
the parameters customer_clv_fit holds for `as_of` (fitted at most clv_refit_days before it; no
fit in this model unless that table has none). Python models cannot call var() or env_var():
the settings arrive as config from _clv__models.yml, rendered there from vars.
"""


def _number(value, default):
    """A config value rendered from a var: a number, or the default when unset."""
    return default if value is None or str(value).strip() in ("", "None", "none") else float(value)


def model(dbt, session):
    dbt.config(materialized="table")
    from yorisoi import clv

    as_of = clv.as_of_or_today(dbt.config.get("as_of"))
    penalizer = _number(dbt.config.get("clv_penalizer"), 0.0)
    fit = clv.usable_fit(dbt.ref("customer_clv_fit").df(), as_of, penalizer)
    purchases = dbt.ref("int_customer_purchase_days").df()
    return clv.predict(
        purchases,
        as_of,
        discount_rate=_number(dbt.config.get("clv_discount_rate"), 0.01),
        penalizer=penalizer,
        fit=fit,
    )
