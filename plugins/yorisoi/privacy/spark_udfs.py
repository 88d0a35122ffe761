"""The normalisation functions and match keys as vectorised Spark UDFs: the twin of duckdb_udfs.

On a SparkSession, before dbt-spark (`method: session`) runs the project:

    from yorisoi.privacy.spark_udfs import register
    register(spark)            # or register(spark, secret=b"...")

registers STRING -> STRING pandas UDFs yorisoi_norm_email, yorisoi_norm_phone, yorisoi_norm_kana,
yorisoi_fold_kana, yorisoi_norm_postal, yorisoi_norm_name, yorisoi_name_readings and
yorisoi_match_key (lowercase hex HMAC-SHA256) as temporary functions of that session. They call the
same Arrow implementations as the DuckDB UDFs (yorisoi.privacy.normalize *_arrow, readings and
keys.hmac_sha256_arrow), so a key computed on Spark equals the key computed on DuckDB. All map NULL
to NULL.

The functions run in Spark's Python workers, so every executor needs this package (and pyarrow,
pandas, numpy, phonenumbers, sudachipy and sudachidict-core) installed. Temporary functions belong
to one session: register them on the session dbt will use (dbt-spark's session method takes
SparkSession.builder.getOrCreate(), i.e. the one already active in the process).

The match-key secret is captured in the UDF and so shipped, inside the serialised function, to the
executors with each task (they need it to hash). Given as `secret`, that value is used; otherwise
register() reads it on the driver through match_key_secret() ($YORISOI_MATCH_KEY or
$YORISOI_MATCH_KEY_FILE). Only when the driver has none does each Python worker look for it in its
own environment at its first hash, so a build that never hashes needs no key. Python workers
inherit the environment the Spark JVM started with, not variables set later in the driver. The
secret is never logged nor shown in a repr.

pyspark is imported inside register(): the package imports without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import normalize, readings
from .keys import MissingMatchKey, hmac_sha256_arrow, match_key_secret
from .normalize import ArrowStrings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["UDF_NAMES", "register"]

_NORMALISERS: dict[str, Callable[[ArrowStrings], ArrowStrings]] = {
    "yorisoi_norm_email": normalize.norm_email_arrow,
    "yorisoi_norm_phone": normalize.norm_phone_arrow,
    "yorisoi_norm_kana": normalize.norm_kana_arrow,
    "yorisoi_fold_kana": normalize.fold_kana_arrow,
    "yorisoi_norm_postal": normalize.norm_postal_arrow,
    "yorisoi_norm_name": normalize.norm_name_arrow,
    "yorisoi_name_readings": readings.name_readings_arrow,
}
UDF_NAMES: tuple[str, ...] = (*_NORMALISERS, "yorisoi_match_key")


def _to_arrow(values: pd.Series) -> ArrowStrings:
    import pyarrow as pa

    # from_pandas: None and NaN (pandas' missing string) become Arrow nulls.
    return pa.array(values, type=pa.string(), from_pandas=True)


def _to_pandas(values: ArrowStrings) -> pd.Series:
    import pandas as pd

    # object dtype with None for null: what Spark's Arrow serializer expects for a STRING result,
    # whatever pandas' default string dtype is.
    return pd.Series(values.to_pylist(), dtype=object)


class _Normaliser:
    """A normalize.*_arrow function over pandas Series (picklable: shipped to Python workers)."""

    def __init__(self, fn: Callable[[ArrowStrings], ArrowStrings]) -> None:
        self.fn = fn

    def __call__(self, values: pd.Series) -> pd.Series:
        return _to_pandas(self.fn(_to_arrow(values)))


class _MatchKey:
    """yorisoi_match_key's body. Without a secret given, each worker reads it at its first call."""

    def __init__(self, secret: bytes | None) -> None:
        self._secret = secret

    def __call__(self, values: pd.Series) -> pd.Series:
        if self._secret is None:
            # A Python worker runs one batch at a time; a race would only read the secret twice.
            self._secret = match_key_secret()
        return _to_pandas(hmac_sha256_arrow(_to_arrow(values), self._secret))

    def __repr__(self) -> str:  # never show the secret
        return f"<yorisoi_match_key secret={'set' if self._secret is not None else 'unread'}>"


def _pandas_udf(body: Callable[[Any], Any]) -> Any:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StringType

    def udf(values):  # type: ignore[no-untyped-def]
        return body(values)

    # Series -> Series marks a scalar pandas UDF; set as objects, since this module's annotations
    # are strings (from __future__ import annotations) that pyspark would resolve in its globals.
    udf.__annotations__ = {"values": pd.Series, "return": pd.Series}
    return pandas_udf(udf, returnType=StringType())  # deterministic: Spark may reuse results


def register(spark: Any, secret: bytes | None = None) -> None:
    """Register the yorisoi_* UDFs as temporary functions of `spark` (a SparkSession); a second call
    replaces them.

    Without `secret`, it is read now through match_key_secret() on the driver; if none is configured
    there, each Python worker reads it at its first hash (and raises MissingMatchKey if it has none).
    """
    if secret is not None and not isinstance(secret, bytes):
        raise TypeError("secret must be bytes")
    if secret is None:
        # Python workers do not see environment variables the driver set after the session (and its
        # JVM) started: read the secret here when the driver has it. When it has none, each worker
        # looks for it at its first hash and raises MissingMatchKey then, so a build that never
        # hashes needs no key. A secret that is too short is an error now.
        with contextlib.suppress(MissingMatchKey):
            secret = match_key_secret()
    for name, fn in _NORMALISERS.items():
        spark.udf.register(name, _pandas_udf(_Normaliser(fn)))
    spark.udf.register("yorisoi_match_key", _pandas_udf(_MatchKey(secret)))
