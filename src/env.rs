//! Reading configuration from environment variables, through a lookup that tests can replace.

use crate::error::{Error, Result};

/// Looks up one variable: `Ok(None)` when unset or blank, the trimmed value otherwise.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>>;

/// The process environment as a [`Lookup`].
pub(crate) fn process(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config {
            message: format!("{name} is not valid UTF-8"),
        }),
    }
}

/// A [`Lookup`] over fixed pairs, for tests.
#[cfg(test)]
pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| {
        Ok(map
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }
}
