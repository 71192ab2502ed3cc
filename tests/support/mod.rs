//! Helpers shared by the database tests.
