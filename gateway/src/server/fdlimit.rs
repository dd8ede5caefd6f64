//! File descriptors: the soft `RLIMIT_NOFILE` is raised to the hard limit at start, and
//! the connection caps are lowered (with a warning) when even that cannot hold them.

/// Descriptors kept for everything but client connections: upstream connections, the
/// ledger, module and key files. Added to what the upstreams' own caps need.
const RESERVE: u64 = 128;

/// Raises the soft descriptor limit to the hard one (where there is one). Returns the
/// soft limit in effect afterwards (`None`: unlimited or unknown).
pub(crate) fn raise() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        // An unlimited hard limit is left alone: the kernel caps the soft one anyway.
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let raised = rustix::process::Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => limit = getrlimit(Resource::Nofile),
                Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection caps `(proxy, admin)` that fit in `limit` descriptors, given what
/// the upstreams need (`upstream`: their in-flight caps and idle pools together).
/// Warns when they had to be lowered.
pub(crate) fn fit(limit: Option<u64>, upstream: u64, proxy: usize, admin: usize) -> (usize, usize) {
    let Some(limit) = limit else {
        return (proxy, admin);
    };
    let available = limit.saturating_sub(RESERVE + upstream) as usize;
    let wanted = proxy.saturating_add(admin);
    if wanted <= available {
        return (proxy, admin);
    }
    let admin_fit = admin.min((available / 8).max(1));
    let proxy_fit = proxy.min(available.saturating_sub(admin_fit).max(1));
    tracing::warn!(
        nofile = limit,
        wanted,
        proxy = proxy_fit,
        admin = admin_fit,
        "the file descriptor limit (RLIMIT_NOFILE) cannot hold the configured connection caps; \
         they are lowered: raise the hard limit (systemd LimitNOFILE=, ulimit -Hn)"
    );
    (proxy_fit, admin_fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_lowered_to_what_the_descriptors_hold() {
        assert_eq!(fit(None, 0, 10_000, 256), (10_000, 256));
        assert_eq!(fit(Some(20_000), 320, 10_000, 256), (10_000, 256));
        let (proxy, admin) = fit(Some(1024), 320, 10_000, 256);
        assert!(proxy + admin <= 1024 - 128 - 320, "{proxy} + {admin}");
        assert!(admin >= 1 && proxy > admin);
        assert!(raise().is_none_or(|n| n >= 1));
    }
}
