//! Palisade's gateway pipeline as a library.
//!
//! Built so far: [`redaction`], the native (no guest needed) redaction phase that runs
//! after the response policies: RFC 9535 JSONPath and regex rules with mask, remove or
//! keyed-hash actions, fail-closed on bodies it cannot read, and the check that a route's
//! rules cover its tenant's mandatory PII paths. The server, routing, auth and audit
//! phases are tracked in the gateway issues.

pub mod redaction;
