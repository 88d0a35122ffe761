"""The data-definition document (データ項目定義書): generated from the source registry, the dbt
manifest and catalog, and the Great Expectations suites, in Japanese and English, as HTML, XLSX
and dbt's static docs. Entry point: `yorisoi.docs.build.generate`."""
