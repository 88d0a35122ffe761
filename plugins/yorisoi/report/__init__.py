"""The CRM report (self-BI): a static, offline HTML file set, Japanese first with an English twin,
built from the warehouse's marts after every segment build (`yorisoi report build`).

Views: key figures, F別継続率 with lead times, cohorts (repeat rate at 30-day steps, monthly
retention), RFM grid and its migration between two dates, deciles and ABC, channel mix, ID links
and deliverable reach, today's triggers with each audience's funnel, campaign results (when the
campaign-outcome marts exist), 顧客BS (the 5-year forecast with no new customers) and data health.

Charts are Vega-Lite specs made with Altair and drawn in the browser by one shared JavaScript file
(Vega, Vega-Lite and Vega-Embed, bundled by vl-convert-python); nothing is loaded from the network.
"""
