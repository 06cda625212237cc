//! Bounded start-up: probe the server with one connection at a time, each under the connect
//! timeout, within the start-up budget, and say why it failed.

use std::fmt;
use std::time::Duration;

use sqlx::Connection;
use tokio::time::Instant;

use crate::util::format_duration;

/// Why a connection could not be made. Each names the likely fixes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectCause {
    /// Nothing listens at the address (server or proxy not running, wrong host or port).
    Refused {
        /// What the OS said.
        message: String,
    },
    /// The connection got no answer within the connect timeout: a black-holed host, a firewall
    /// dropping packets, or a proxy that accepts and never replies.
    NoAnswer {
        /// The connect timeout that passed.
        limit: Duration,
    },
    /// Every connection slot is taken (SQLSTATE 53300): "too many clients" or "remaining
    /// connection slots are reserved".
    TooManyConnections {
        /// The server's message.
        message: String,
    },
    /// The server is starting up, shutting down or recovering (SQLSTATE 57P03 and kin).
    StartingUp {
        /// The server's message.
        message: String,
    },
    /// The server refused the credentials (SQLSTATE 28P01, 28000).
    Authentication {
        /// The server's message.
        message: String,
    },
    /// The database named in the URL does not exist (SQLSTATE 3D000).
    UnknownDatabase {
        /// The server's message.
        message: String,
    },
    /// TLS could not be negotiated.
    Tls {
        /// What failed.
        message: String,
    },
    /// The URL or options are invalid.
    Configuration {
        /// What is wrong.
        message: String,
    },
    /// Anything else.
    Other {
        /// The driver's message.
        message: String,
    },
}

impl ConnectCause {
    /// Whether waiting could help: a server that is restarting, a full server, a proxy coming up.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnectCause::Refused { .. }
                | ConnectCause::NoAnswer { .. }
                | ConnectCause::TooManyConnections { .. }
                | ConnectCause::StartingUp { .. }
                | ConnectCause::Other { .. }
        )
    }

    /// What to do about it.
    pub fn fixes(&self) -> &'static str {
        match self {
            ConnectCause::Refused { .. } => {
                "start the database server or the proxy in front of it (cloud-sql-proxy, pgbouncer), and check host and port in the URL"
            }
            ConnectCause::NoAnswer { .. } => {
                "check that the host is reachable from here (firewall, security group, VPN) and that a proxy in front of the database is connected to it; a wrong IP that drops packets looks the same"
            }
            ConnectCause::TooManyConnections { .. } => {
                "all connection slots are taken: look for leaked sessions (`lifecycle-diagnose --url ...`), lower max connections of the services sharing the server, or raise max_connections"
            }
            ConnectCause::StartingUp { .. } => {
                "the server is starting up or recovering: wait for it, or give start-up a longer budget"
            }
            ConnectCause::Authentication { .. } => {
                "check the user and password in the URL and the server's pg_hba.conf"
            }
            ConnectCause::UnknownDatabase { .. } => {
                "create the database, or fix its name in the URL"
            }
            ConnectCause::Tls { .. } => "check sslmode and the certificates in the URL",
            ConnectCause::Configuration { .. } => "fix the URL or the options",
            ConnectCause::Other { .. } => {
                "see the message; check the URL and that the server is healthy"
            }
        }
    }

    /// Sorts a driver error into a cause.
    pub(crate) fn classify(error: &sqlx::Error) -> ConnectCause {
        match error {
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ConnectCause::Refused {
                    message: io.to_string(),
                },
                _ => ConnectCause::Other {
                    message: io.to_string(),
                },
            },
            sqlx::Error::Tls(tls) => ConnectCause::Tls {
                message: tls.to_string(),
            },
            sqlx::Error::Configuration(config) => ConnectCause::Configuration {
                message: config.to_string(),
            },
            sqlx::Error::Database(database) => {
                let message = database.message().to_owned();
                match database.code().as_deref() {
                    Some("53300") => ConnectCause::TooManyConnections { message },
                    Some("57P03" | "57P01" | "57P02") => ConnectCause::StartingUp { message },
                    Some("28P01" | "28000") => ConnectCause::Authentication { message },
                    Some("3D000") => ConnectCause::UnknownDatabase { message },
                    _ => ConnectCause::Other { message },
                }
            }
            other => ConnectCause::Other {
                message: other.to_string(),
            },
        }
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The OS's own words ("Connection refused (os error 111)") add nothing but the errno.
            ConnectCause::Refused { .. } => f.write_str("connection refused"),
            ConnectCause::NoAnswer { limit } => {
                write!(
                    f,
                    "no answer within the connect timeout of {}",
                    format_duration(*limit)
                )
            }
            ConnectCause::TooManyConnections { message } => {
                write!(f, "too many connections (SQLSTATE 53300: {message})")
            }
            ConnectCause::StartingUp { message } => write!(
                f,
                "the database is not accepting connections yet ({message})"
            ),
            ConnectCause::Authentication { message } => {
                write!(f, "authentication failed ({message})")
            }
            ConnectCause::UnknownDatabase { message } => write!(f, "unknown database ({message})"),
            ConnectCause::Tls { message } => write!(f, "TLS failed ({message})"),
            ConnectCause::Configuration { message } => write!(f, "bad configuration ({message})"),
            ConnectCause::Other { message } => f.write_str(message),
        }
    }
}

/// How probing went.
pub(crate) struct Probe {
    pub(crate) attempts: u32,
    pub(crate) waited: Duration,
    pub(crate) result: Result<(), ConnectCause>,
}

/// Tries to open one connection, each try under `connect_timeout`, retrying transient causes
/// until `budget` is spent.
pub(crate) async fn probe<DB: sqlx::Database>(
    options: &<DB::Connection as Connection>::Options,
    connect_timeout: Duration,
    budget: Duration,
) -> Probe {
    let started = Instant::now();
    let deadline = started + budget;
    let mut attempts = 0;
    let mut pause = Duration::from_millis(100);
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = connect_timeout.min(left);
        let cause = match tokio::time::timeout(limit, DB::Connection::connect_with(options)).await {
            Ok(Ok(connection)) => {
                // Say goodbye politely, but never wait long for it.
                let _ = tokio::time::timeout(Duration::from_secs(1), connection.close()).await;
                return Probe {
                    attempts,
                    waited: started.elapsed(),
                    result: Ok(()),
                };
            }
            Ok(Err(error)) => ConnectCause::classify(&error),
            Err(_) => ConnectCause::NoAnswer { limit },
        };
        let now = Instant::now();
        if !cause.is_transient() || now + pause >= deadline {
            tracing::debug!(attempts, %cause, "giving up connecting");
            return Probe {
                attempts,
                waited: started.elapsed(),
                result: Err(cause),
            };
        }
        tracing::debug!(attempt = attempts, %cause, "connecting failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// URL parameters sqlx's PostgreSQL driver understands; any other is ignored by it.
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Parameters of a PostgreSQL URL that sqlx will ignore, with advice for the known ones.
pub(crate) fn ignored_parameters(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .filter(|key| !key.is_empty() && !POSTGRES_PARAMETERS.contains(key))
        .map(|key| match key {
            "connect_timeout" => {
                "`connect_timeout` (sqlx ignores it: use DatabaseOptions::connect_timeout)"
                    .to_owned()
            }
            "statement_timeout" => {
                "`statement_timeout` (use DatabaseOptions::statement_timeout)".to_owned()
            }
            other => format!("`{other}`"),
        })
        .collect()
}

/// The URL without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            if credentials.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/main?sslmode=require"),
            "postgres://app:***@db:5432/main?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/main"), "postgres://app@db/main");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn parameters_sqlx_ignores_are_found() {
        assert_eq!(
            ignored_parameters("postgres://db/main?sslmode=disable&connect_timeout=5&keepalives=1"),
            [
                "`connect_timeout` (sqlx ignores it: use DatabaseOptions::connect_timeout)",
                "`keepalives`"
            ]
        );
        assert!(ignored_parameters("postgres://db/main?application_name=x").is_empty());
        assert!(ignored_parameters("postgres://db/main").is_empty());
    }
}
