"""The yorisoi_* DuckDB UDFs (yorisoi.privacy.duckdb_udfs) and their dbt-duckdb plugin."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest
from dbt.adapters.duckdb.plugins import BasePlugin

from yorisoi.privacy import duckdb_udfs, normalize
from yorisoi.privacy.duckdb_udfs import UDF_NAMES, Plugin, register
from yorisoi.privacy.keys import hmac_sha256

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    register(connection, SECRET)
    yield connection
    connection.close()


def one(conn: duckdb.DuckDBPyConnection, sql: str, *params: object) -> object:
    return conn.execute(sql, list(params)).fetchone()[0]


@pytest.mark.parametrize(
    ("function", "value", "expected"),
    [
        ("yorisoi_norm_phone", "０９０－１２３４－５６７８", "+819012345678"),
        ("yorisoi_norm_phone", "(03)1234-5678", "+81312345678"),
        ("yorisoi_norm_phone", "+1 650-253-0000", "+16502530000"),
        ("yorisoi_norm_phone", "abc", None),
        ("yorisoi_norm_email", "ＴＡＲＯ＠Example.COM ", "taro@example.com"),
        ("yorisoi_norm_email", "taro@@example.com", None),
        ("yorisoi_norm_kana", "ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダタロウ"),
        ("yorisoi_norm_kana", "やまだ　たろう", "ヤマダタロウ"),
        ("yorisoi_fold_kana", "ｼｮｳ", "シヨウ"),
        ("yorisoi_norm_postal", "〒１２３－４５６７", "1234567"),
        ("yorisoi_norm_name", "山田　太郎", "山田太郎"),
        ("yorisoi_norm_name", "", None),
        ("yorisoi_match_key", "taro@example.com", hmac_sha256("taro@example.com", SECRET)),
    ],
)
def test_udf_golden_values(conn: duckdb.DuckDBPyConnection, function: str, value: str, expected: str | None) -> None:
    assert one(conn, f"select {function}(?)", value) == expected
    assert one(conn, f"select {function}('{value}')") == expected  # a constant, folded once


@pytest.mark.parametrize("function", UDF_NAMES)
def test_null_in_null_out(conn: duckdb.DuckDBPyConnection, function: str) -> None:
    assert one(conn, f"select {function}(NULL)") is None
    rows = conn.execute(f"select {function}(v) from (values ('x'), (NULL), ('y')) t(v)").fetchall()
    assert rows[1] == (None,)
    assert conn.execute(f"select typeof({function}('x'))").fetchone() == ("VARCHAR",)


def test_sql_equals_python_on_a_table(conn: duckdb.DuckDBPyConnection) -> None:
    values = ["ﾔﾏﾀﾞ ﾀﾛｳ", "ＴＡＲＯ＠Example.COM", "090 1234 5678", "〒１２３－４５６７", None, "", "+81 (0)3 1234 5678"]
    conn.register("t", pa.table({"i": range(len(values)), "v": pa.array(values, pa.string())}))
    # The normalisers (the readings' UDF is checked against its Python twin in test_readings.py).
    pairs = [
        (name, getattr(normalize, name.removeprefix("yorisoi_")))
        for name in UDF_NAMES[:-1]
        if hasattr(normalize, name.removeprefix("yorisoi_"))
    ]
    assert len(pairs) == len(UDF_NAMES) - 2
    select = ", ".join(f"list({name}(v) order by i)" for name, _ in pairs)
    got = conn.execute(f"select {select} from t").fetchone()
    assert list(got) == [[fn(v) for v in values] for _, fn in pairs]


def test_200k_rows_run_in_vectors(conn: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_sizes: list[int] = []

    def counting(values: pa.ChunkedArray) -> pa.ChunkedArray:
        batch_sizes.append(len(values))
        return normalize.norm_phone_arrow(values)

    monkeypatch.setitem(duckdb_udfs._NORMALISERS, "yorisoi_norm_phone", counting)
    register(conn, SECRET)
    sql = """
        select count(*), count(phone), count(distinct phone),
               count(*) filter (where phone like '+8190%' and length(phone) = 13),
               count(distinct key), count(*) filter (where key = sha256(k)), min(key) filter (where k = 'k7')
        from (
            select yorisoi_norm_phone('０９０－' || lpad((i // 10000)::varchar, 4, '0') || '－'
                                      || lpad((i % 10000)::varchar, 4, '0')) as phone,
                   'k' || (i % 100)::varchar as k,
                   yorisoi_match_key(k) as key
            from range(200000) t(i)
        )
    """
    expected = (200_000, 200_000, 200_000, 200_000, 100, 0, hmac_sha256("k7", SECRET))
    assert conn.execute(sql).fetchone() == expected  # keyed: no key equals the plain SHA-256
    assert sum(batch_sizes) == 200_000
    assert max(batch_sizes) >= 1024  # vectors of rows, not one row per call
    assert len(batch_sizes) <= 200_000 // 1024


def test_register_twice_replaces_the_functions(conn: duckdb.DuckDBPyConnection) -> None:
    other = b"fedcba9876543210fedcba9876543210"
    register(conn, other)
    register(conn, other)
    assert one(conn, "select yorisoi_match_key('x')") == hmac_sha256("x", other)
    assert one(conn, "select yorisoi_norm_postal('123-4567')") == "1234567"


def test_secret_read_at_first_hash_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YORISOI_MATCH_KEY", raising=False)
    monkeypatch.delenv("YORISOI_MATCH_KEY_FILE", raising=False)
    connection = duckdb.connect()
    try:
        register(connection)
        assert one(connection, "select yorisoi_norm_email('A@B.jp')") == "a@b.jp"  # no key needed
        with pytest.raises(duckdb.Error, match="YORISOI_MATCH_KEY_FILE"):
            connection.execute("select yorisoi_match_key('x')").fetchall()
        monkeypatch.setenv("YORISOI_MATCH_KEY", SECRET.decode())
        assert one(connection, "select yorisoi_match_key('x')") == hmac_sha256("x", SECRET)
        monkeypatch.setenv("YORISOI_MATCH_KEY", "another-secret-of-some-length")
        assert one(connection, "select yorisoi_match_key('x')") == hmac_sha256("x", SECRET)  # read once
    finally:
        connection.close()


def test_dbt_duckdb_loads_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YORISOI_MATCH_KEY", SECRET.decode())
    plugin = BasePlugin.create("yorisoi.privacy.duckdb_udfs")
    assert isinstance(plugin, Plugin)
    connection = duckdb.connect()
    try:
        plugin.configure_connection(connection)
        cursor = connection.cursor()  # dbt runs models on cursors of the configured connection
        row = cursor.execute("select yorisoi_norm_kana('ｼｮｳ'), yorisoi_match_key('x')").fetchone()
        assert row == ("ショウ", hmac_sha256("x", SECRET))
        cursor.close()
    finally:
        connection.close()
