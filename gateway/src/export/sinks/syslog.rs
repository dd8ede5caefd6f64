//! Syslog: RFC 5424 messages over TCP (or TLS, RFC 5425), octet-counted (RFC 6587
//! section 3.4.1): `<len> <110>1 TIMESTAMP HOST APP - MSGID - JSON`. PRI 110 is facility
//! 13 (log audit), severity 6 (informational); MSGID is `block` or `checkpoint`.
//!
//! A batch counts as acknowledged once written and flushed to the connection: syslog
//! has no application acknowledgement, so what the kernel had buffered when the
//! receiver died is lost with it unless the receiver closes the connection first (then
//! the next batch reconnects and resends from the cursor).

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::export::config::Tls;
use crate::export::item::Item;

pub(crate) struct Syslog {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    app_name: String,
    host: String,
    conn: Option<Stream>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the receiver has closed the connection (a restart, say), given a
    /// millisecond so that the reactor has seen what the kernel already knows. Plain TCP:
    /// the receiver sends nothing, so readable with nothing to read is the end of the
    /// stream (peeked, never consumed). TLS: the server does send records (TLS 1.3
    /// session tickets, `close_notify`), so the check reads through the TLS layer, which
    /// takes the tickets itself and reports `close_notify` or the end as 0 bytes.
    async fn closed(&mut self) -> bool {
        let wait = Duration::from_millis(1);
        match self {
            Stream::Plain(t) => {
                let mut byte = [0u8; 1];
                matches!(
                    tokio::time::timeout(wait, t.peek(&mut byte)).await,
                    Ok(Ok(0) | Err(_))
                )
            }
            Stream::Tls(t) => {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 512];
                matches!(
                    tokio::time::timeout(wait, t.read(&mut buf)).await,
                    Ok(Ok(0) | Err(_))
                )
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
            Stream::Tls(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
        }
    }
}

impl Syslog {
    pub(crate) fn new(
        address: String,
        tls: Option<&Tls>,
        app_name: String,
        host: &str,
    ) -> Result<Self, String> {
        let tls = match tls {
            None => None,
            Some(t) => {
                let roots = crate::auth::introspect::trust_roots(t.ca.as_deref())?;
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = ServerName::try_from(t.server_name.clone())
                    .map_err(|e| format!("server_name `{}`: {e}", t.server_name))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Syslog {
            address,
            tls,
            app_name,
            host: hostname(host),
            conn: None,
        })
    }

    pub(crate) async fn send(&mut self, items: &[Item]) -> Result<(), String> {
        let mut frames = Vec::new();
        for item in items {
            frames.extend_from_slice(&frame(item, &self.host, &self.app_name));
        }
        if let Some(conn) = &mut self.conn
            && conn.closed().await
        {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(self.connect().await?),
        };
        if let Err(e) = conn.write(&frames).await {
            self.conn = None;
            return Err(format!("{}: {e}", self.address));
        }
        Ok(())
    }

    /// Drops the connection (after a timeout: a frame may be half written).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    async fn connect(&self) -> Result<Stream, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("{}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|t| Stream::Tls(Box::new(t)))
                .map_err(|e| format!("{}: TLS: {e}", self.address)),
        }
    }
}

/// One octet-counted RFC 5424 message.
pub(crate) fn frame(item: &Item, host: &str, app_name: &str) -> Vec<u8> {
    let message = format!(
        "<110>1 {} {host} {app_name} - {} - {}",
        rfc3339(item.time_ms),
        item.kind.name(),
        item.line
    );
    format!("{} {message}", message.len()).into_bytes()
}

/// The HOSTNAME field: printable ASCII without spaces, at most 255, else `-`.
fn hostname(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// `2026-12-01T06:16:29.123Z` for Unix milliseconds.
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::item::ItemKind;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_105_789_123), "2026-12-01T06:16:29.123Z");
    }

    #[test]
    fn a_frame_is_octet_counted_rfc5424() {
        let item = Item {
            kind: ItemKind::Checkpoint,
            seq: 3,
            time_ms: 0,
            line: "{\"type\":\"checkpoint\",\"note\":\"é\"}".into(),
        };
        let frame = String::from_utf8(frame(&item, &hostname("gw 1"), "palisade")).unwrap();
        let (len, message) = frame.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert_eq!(
            message,
            "<110>1 1970-01-01T00:00:00.000Z gw1 palisade - checkpoint - {\"type\":\"checkpoint\",\"note\":\"é\"}"
        );
    }
}
