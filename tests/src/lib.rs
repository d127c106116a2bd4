//! Library half of the system tests (shared harness code).
