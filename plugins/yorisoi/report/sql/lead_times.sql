-- Lead-time bands per step of the F-ladder, with the step's percentiles.
select
    bands.from_f,
    bands.from_f_label,
    bands.lead_time_bucket,
    bands.bucket_order,
    bands.purchases,
    bands.share,
    bands.cumulative_share,
    summary.median_days,
    summary.p75_days,
    summary.p90_days
from marts.f_lead_times as bands
inner join marts.f_lead_time_summary as summary
    on bands.from_f = summary.from_f
order by bands.from_f, bands.bucket_order
