"""Campaign outcomes: did a send work, measured against its control group (docs/campaign-measurement.md).

``stats`` holds the tests (two proportions, Welch, CUPED, always-valid intervals, the sample-ratio
check, Benjamini-Hochberg) and the plain-language verdict; the facts themselves are dbt models
(``marts/campaigns``).
"""
