//! `allocdb-wal` is AllocDB's durable storage (work in progress).
