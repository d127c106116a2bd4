//! Live clusters (placeholder).
