//! Where exported items go. Each sink's `send` returns once the batch is acknowledged
//! (what that means is each sink's own: see its module); only then does the cursor move.

pub(crate) mod http;
pub(crate) mod jsonl;
pub(crate) mod syslog;

use base64::Engine as _;

use super::config::{ElasticAuth, Kind, Sink as Config};
use super::item::Item;

/// A sink, ready to send.
pub(crate) enum Sink {
    Jsonl(jsonl::Jsonl),
    Syslog(syslog::Syslog),
    /// Boxed: the client and its TLS configuration are large.
    Http(Box<http::Http>),
}

impl Sink {
    /// Builds the sink `config` describes, reading its credentials and CA files; `host`
    /// is this gateway's name (`[audit] instance`). Connects lazily.
    ///
    /// # Errors
    ///
    /// When a credential or CA file cannot be read (the message never holds a secret).
    pub(crate) fn new(config: &Config, host: &str) -> Result<Self, String> {
        Ok(match &config.kind {
            Kind::Jsonl {
                path,
                max_bytes,
                keep,
            } => Sink::Jsonl(jsonl::Jsonl::new(path.clone(), *max_bytes, *keep)),
            Kind::Syslog {
                address,
                tls,
                app_name,
            } => Sink::Syslog(syslog::Syslog::new(
                address.clone(),
                tls.as_ref(),
                app_name.clone(),
                host,
            )?),
            Kind::Elastic {
                url,
                index,
                auth,
                ca,
            } => {
                let authorization = match auth {
                    None => None,
                    Some(ElasticAuth::ApiKey(key)) => Some(format!("ApiKey {}", *key.read()?)),
                    Some(ElasticAuth::Basic { username, password }) => {
                        let pair =
                            zeroize::Zeroizing::new(format!("{username}:{}", *password.read()?));
                        Some(format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
                        ))
                    }
                };
                Sink::Http(Box::new(http::Http::new(
                    url,
                    http::Format::Elastic {
                        index: index.clone(),
                    },
                    authorization.map(zeroize::Zeroizing::new),
                    ca.as_deref(),
                    config.timeout,
                )?))
            }
            Kind::Splunk {
                url,
                token,
                index,
                ca,
            } => Sink::Http(Box::new(http::Http::new(
                url,
                http::Format::Splunk {
                    index: index.clone(),
                    host: host.to_string(),
                },
                Some(zeroize::Zeroizing::new(format!(
                    "Splunk {}",
                    *token.read()?
                ))),
                ca.as_deref(),
                config.timeout,
            )?)),
        })
    }

    /// Sends `items` and waits for the acknowledgement.
    ///
    /// # Errors
    ///
    /// What failed: unreachable, refused, or not acknowledged.
    pub(crate) async fn send(&mut self, items: &[Item]) -> Result<(), super::Error> {
        match self {
            Sink::Jsonl(s) => s
                .write(items)
                .map_err(|e| super::Error::Sink(e.to_string())),
            Sink::Syslog(s) => s.send(items).await.map_err(super::Error::Sink),
            Sink::Http(s) => s.send(items).await,
        }
    }

    /// Forgets a connection that may be in a bad state (a send timed out midway).
    pub(crate) fn reset(&mut self) {
        if let Sink::Syslog(s) = self {
            s.reset();
        }
    }
}
