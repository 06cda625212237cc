//! Settings read from the environment at start.

use std::time::Duration;

/// A setting from the environment could not be used. Names the variable, the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value is not a duration.
    #[error(
        "environment variable {variable}={value:?} is not a duration ({reason}); write it like \"30s\", \"1500ms\" or \"2m\", or unset it to use {default}"
    )]
    BadDuration {
        /// The variable's name.
        variable: &'static str,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: String,
        /// What applies when it is unset.
        default: String,
    },
    /// The value is not valid UTF-8.
    #[error(
        "environment variable {variable} is not valid UTF-8; unset it or write a duration like \"30s\""
    )]
    NotUnicode {
        /// The variable's name.
        variable: &'static str,
    },
}

/// The shutdown budget variable.
pub(crate) const SHUTDOWN_TIMEOUT_VAR: &str = "LIFECYCLE_SHUTDOWN_TIMEOUT";
/// The drain time variable.
pub(crate) const DRAIN_VAR: &str = "LIFECYCLE_DRAIN";

/// Reads a humantime duration from `variable`; `Ok(None)` when unset or empty.
pub(crate) fn env_duration(
    variable: &'static str,
    default: Duration,
) -> Result<Option<Duration>, ConfigError> {
    let value = match std::env::var(variable) {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => return Err(ConfigError::NotUnicode { variable }),
    };
    if value.trim().is_empty() {
        return Ok(None);
    }
    humantime::parse_duration(value.trim())
        .map(Some)
        .map_err(|error| ConfigError::BadDuration {
            variable,
            value,
            reason: error.to_string(),
            default: crate::util::format_duration(default),
        })
}
