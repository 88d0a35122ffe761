"""Normalisation of contact fields and keyed match keys, in Python and as vectorised DuckDB UDFs."""
