"""Audience activation: audiences as code, membership with control groups and variants,
arbitration, the circuit breaker, and diff-based syncs to email, LINE, SMS, S3 and SFTP files."""
