//! Counters and rates per server and per backend.
