//! Deserializing helpers the subsystems' config types share: durations written as whole
//! milliseconds or microseconds, and paths relative to the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A `*_ms` key: whole milliseconds.
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A `*_us` key: whole microseconds.
pub(crate) fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_micros)
}

/// `path` against the config file's directory `base` (an absolute path stays as it is).
pub(crate) fn rebase(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// A configured URL as errors may show it: `user:pass@` and the query (where
/// credentials hide) replaced by `***`, so a typo in a URL that carries a secret
/// does not put the secret in the log.
pub(crate) fn shown_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    // Everything up to the last `@` first: a mistyped password may hold a `/` or a `?`
    // (a path or query that holds an `@` is hidden too, which errs the safe way).
    let (hidden, rest) = match rest.rsplit_once('@') {
        Some((_, host)) => ("***@", host),
        None => ("", rest),
    };
    // Then the query and the fragment.
    let (rest, cut) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], "?***"),
        None => (rest, ""),
    };
    format!("{scheme}{hidden}{rest}{cut}")
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn shown_urls_hide_credentials_and_queries() {
        assert_eq!(
            shown_url("https://u:s3cr3t@h:1/p?k=v"),
            "https://***@h:1/p?***"
        );
        assert_eq!(shown_url("http://h/p"), "http://h/p");
        assert_eq!(shown_url("u:s3cr3t@h"), "***@h");
        assert_eq!(shown_url("ftp://a@b@c/x"), "ftp://***@c/x");
        assert_eq!(shown_url("http://u:pa/ss@h/x"), "http://***@h/x");
        assert_eq!(shown_url("https://u:pa?ss@h/x"), "https://***@h/x");
        assert_eq!(shown_url("https://h/x#tok=s3cr3t"), "https://h/x?***");
    }
}
