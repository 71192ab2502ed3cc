//! The fake Bot API.
