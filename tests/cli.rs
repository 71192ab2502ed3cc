//! The `prewarm` binary, end to end.
