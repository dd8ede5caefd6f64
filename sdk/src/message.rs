//! The types a policy works with.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A policy's error: the message reaches the audit record, never the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(message.to_string())
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("invalid JSON body: {e}"))
    }
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// HTTP headers in wire order. Lookups ignore case; names may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Sets `name` to `value`, replacing every existing value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.0.push((name, value.into()));
    }
    /// Adds a value for `name`, keeping existing ones.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
    /// Removes every value of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before - self.0.len()
    }
    /// Iterates over `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

/// A body that is fetched from the host only when the policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// Not read yet; lives in the host.
    Unread,
    /// Read (or given natively), unchanged.
    Read(Vec<u8>),
    /// Replaced by the policy.
    Replaced(Vec<u8>),
}

impl Body {
    fn bytes(&mut self) -> &[u8] {
        if let Body::Unread = self {
            *self = Body::Read(crate::backend::body());
        }
        match self {
            Body::Read(b) | Body::Replaced(b) => b,
            Body::Unread => unreachable!("just read"),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Body::Unread => crate::backend::body_size(),
            Body::Read(b) | Body::Replaced(b) => b.len() as u64,
        }
    }

    /// The new body, if the policy replaced it.
    pub(crate) fn into_replacement(self) -> Option<Vec<u8>> {
        match self {
            Body::Replaced(b) => Some(b),
            _ => None,
        }
    }
}

macro_rules! body_methods {
    () => {
        /// The body's bytes. Fetched from the host on first use: a policy that never
        /// calls this never pays for the body.
        pub fn body(&mut self) -> &[u8] {
            self.body.bytes()
        }
        /// The body's length, without fetching it.
        pub fn body_len(&self) -> u64 {
            self.body.len()
        }
        /// Replaces the body.
        pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
            self.body = Body::Replaced(body.into());
        }
        /// Parses the body as JSON.
        ///
        /// # Errors
        ///
        /// When the body is not valid JSON for `T`.
        pub fn json<T: DeserializeOwned>(&mut self) -> Result<T> {
            Ok(serde_json::from_slice(self.body())?)
        }
        /// Replaces the body with `value` as JSON (the `content-type` header is left as is).
        ///
        /// # Errors
        ///
        /// When `value` cannot be serialized.
        pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
            self.body = Body::Replaced(serde_json::to_vec(value)?);
            Ok(())
        }
        /// Whether the policy replaced the body.
        pub fn body_replaced(&self) -> bool {
            matches!(self.body, Body::Replaced(_))
        }
    };
}

/// A request's head: what the response phase sees of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query without `?`.
    pub query: String,
    /// Headers.
    pub headers: Headers,
}

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query without `?`.
    pub query: String,
    /// Headers.
    pub headers: Headers,
    pub(crate) body: Body,
}

impl Request {
    /// A request with an empty body (for tests and examples).
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Headers::default(),
            body: Body::Read(Vec::new()),
        }
    }
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }
    /// `POST path` with a JSON body.
    pub fn post_json(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self::new("POST", path)
            .with_header("content-type", "application/json")
            .with_body(body.to_string())
    }
    /// With this header added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }
    /// With this query string.
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }
    /// With this body (as received, not "replaced").
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Read(body.into());
        self
    }
    /// The head, without the body.
    pub fn head(&self) -> RequestHead {
        RequestHead {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
        }
    }
    body_methods!();
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    pub(crate) body: Body,
}

impl Response {
    /// A response with this status and body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Headers::default(),
            body: Body::Read(body.into()),
        }
    }
    /// A JSON response (`content-type: application/json`).
    pub fn from_json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, value.to_string()).with_header("content-type", "application/json")
    }
    /// With this header added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }
    /// The body, taking it (fetching it from the host if unread).
    pub fn into_body(mut self) -> Vec<u8> {
        self.body.bytes();
        match self.body {
            Body::Read(b) | Body::Replaced(b) => b,
            Body::Unread => Vec::new(),
        }
    }
    body_methods!();
}

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<T> {
    /// Go on with this message.
    Continue(T),
    /// Answer with this response and stop the pipeline.
    Respond(Response),
}

impl<T> Action<T> {
    /// Answers `status` with a JSON body `{"error": message}`: the safe way to deny.
    pub fn deny(status: u16, message: &str) -> Self {
        Action::Respond(Response::from_json(
            status,
            &serde_json::json!({ "error": message }),
        ))
    }
    /// Answers with `status` and `body`.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Action::Respond(Response::new(status, body))
    }
    /// The continued message, if any.
    pub fn into_continue(self) -> Option<T> {
        match self {
            Action::Continue(t) => Some(t),
            Action::Respond(_) => None,
        }
    }
    /// The response, if the policy responded.
    pub fn into_respond(self) -> Option<Response> {
        match self {
            Action::Respond(r) => Some(r),
            Action::Continue(_) => None,
        }
    }
}

/// The caller's verified identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// Subject (never a credential).
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Verified claims.
    pub claims: Vec<(String, serde_json::Value)>,
}

impl Identity {
    /// The claim `name`.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.claims.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Read-only facts about the invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The route's tenant.
    pub tenant: String,
    /// The route's name.
    pub route: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The caller, when authenticated.
    pub identity: Option<Identity>,
    /// This policy's configuration from the route.
    pub config: Vec<(String, String)>,
}

impl Context {
    /// The config value of `key`.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// With a config entry (for tests).
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }
    /// With an identity (for tests).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
}
