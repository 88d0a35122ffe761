"""The operation log (操作ログ): every export and every read of personal data, append-only and
hash-chained (`yorisoi.audit.log`), and the commands that list it and read a customer
(`yorisoi.audit.cli`)."""

from .log import Verification, list_entries, record, record_export, sha256_of, verify

__all__ = ["Verification", "list_entries", "record", "record_export", "sha256_of", "verify"]
