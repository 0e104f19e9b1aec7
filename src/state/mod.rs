//! Live servers and backends, and reload diffs.
