"""Audience activation in two halves: `selection` decides who gets a message (audiences as code,
membership, arbitration, the circuit breaker) and `delivery` delivers it exactly once (the sync
engine, its store, rate limits and the destinations). `run` joins them for one audience."""
