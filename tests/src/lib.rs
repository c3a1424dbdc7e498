//! Shared helpers for the cross-backend test suites in `tests/tests/`.
