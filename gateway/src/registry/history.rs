//! Which version of a module is active, and how it got there. Every activation, rollback
//! and revert is a row of `palisade_registry_history` that holds the stack of versions it
//! left (the active one on top), so a rollback goes back one step at a time (a second one
//! goes further back, never forward) and `palisade module history` shows the record.

use serde::Serialize;

use crate::db::Conn;

/// One change of a module's active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its place in the module's history (from 1).
    pub seq: u64,
    /// `activate`, `rollback` or `revert` (an activation undone because the routes could
    /// not be built with it).
    pub action: String,
    /// The version active after it, if any.
    pub version: Option<String>,
    /// Who did it.
    pub actor: String,
    /// When (Unix milliseconds).
    pub time_ms: u64,
}

/// A change to make.
pub(super) enum Step {
    Activate(String),
    Rollback,
    /// Undo the change that returned this (when nothing was changed since).
    Undo(Undo),
}

/// How to undo one change: the row it wrote (none: it changed nothing) and the stack
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undo {
    seq: Option<u64>,
    before: Vec<String>,
}

/// What a step did.
pub(super) enum Done {
    /// The version now active (none: the module has no active version), and its undo.
    Active(Option<String>, Undo),
    /// A rollback with nothing (left) to go back to.
    NoPrevious,
}

/// Applies `step` to `tenant`'s module `name`: the active version and a history row, in
/// one transaction that gateways sharing the database take in turn. A `dry_run` says
/// what it would do and writes nothing.
pub(super) fn apply(
    m: &mut Conn,
    tenant: &str,
    name: &str,
    step: &Step,
    actor: &str,
    now_ms: u64,
    dry_run: bool,
) -> Result<Done, String> {
    let lock = format!("palisade-registry/{tenant}/{name}");
    m.locked(&lock, |m| {
        locked(m, tenant, name, step, actor, now_ms, dry_run)
    })
}

fn locked(
    m: &mut Conn,
    tenant: &str,
    name: &str,
    step: &Step,
    actor: &str,
    now_ms: u64,
    dry_run: bool,
) -> Result<Done, String> {
    let active_row = m
        .rows(
            "SELECT version, previous FROM palisade_registry_active WHERE tenant = $1 AND name = $2",
            &[tenant, name],
        )?
        .into_iter()
        .next();
    let text = |row: &Option<Vec<Option<String>>>, i: usize| {
        row.as_ref()
            .and_then(|r| r.get(i).cloned().flatten())
            .filter(|v| !v.is_empty())
    };
    let active = text(&active_row, 0);
    let last = m
        .rows(
            "SELECT CAST(seq AS TEXT), stack FROM palisade_registry_history WHERE tenant = $1 AND name = $2 ORDER BY seq DESC LIMIT 1",
            &[tenant, name],
        )?
        .into_iter()
        .next();
    let seq: u64 = text(&last, 0).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut stack: Vec<String> = match &last {
        Some(_) => text(&last, 1)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        // Before the history: the active version and the one before it.
        None => [text(&active_row, 1), active.clone()]
            .into_iter()
            .flatten()
            .collect(),
    };
    // The active table is what runs: the stack follows it.
    if stack.last() != active.as_ref() {
        match &active {
            Some(a) => stack.push(a.clone()),
            None => stack.clear(),
        }
    }
    let before = stack.clone();
    let unchanged = |stack: Vec<String>| {
        Ok(Done::Active(
            stack.last().cloned(),
            Undo {
                seq: None,
                before: stack,
            },
        ))
    };
    let action = match step {
        Step::Activate(v) => {
            if active.as_ref() == Some(v) {
                return unchanged(stack);
            }
            stack.push(v.clone());
            "activate"
        }
        Step::Rollback => {
            stack.pop();
            // Versions deleted since are skipped.
            while let Some(top) = stack.last() {
                let exists = m.rows(
                    "SELECT 1 FROM palisade_registry_versions WHERE tenant = $1 AND name = $2 AND version = $3",
                    &[tenant, name, top],
                )?;
                if !exists.is_empty() {
                    break;
                }
                stack.pop();
            }
            if stack.is_empty() {
                return Ok(Done::NoPrevious);
            }
            "rollback"
        }
        Step::Undo(undo) => {
            let Some(ours) = undo.seq else {
                return unchanged(stack);
            };
            if ours != seq {
                return Err(format!(
                    "module {name} changed since (history row {seq}, not {ours}); not reverted"
                ));
            }
            stack = undo.before.clone();
            "revert"
        }
    };
    if dry_run {
        return unchanged(stack);
    }
    match stack.last() {
        Some(top) => {
            let below = stack
                .len()
                .checked_sub(2)
                .map(|i| stack[i].clone())
                .unwrap_or_default();
            let updated = m.exec(
                "UPDATE palisade_registry_active SET version = $3, previous = $4 WHERE tenant = $1 AND name = $2",
                &[tenant, name, top, &below],
            )?;
            if updated == 0 {
                m.exec(
                    "INSERT INTO palisade_registry_active (tenant, name, version, previous) VALUES ($1, $2, $3, $4)",
                    &[tenant, name, top, &below],
                )?;
            }
        }
        None => {
            m.exec(
                "DELETE FROM palisade_registry_active WHERE tenant = $1 AND name = $2",
                &[tenant, name],
            )?;
        }
    }
    let top = stack.last().cloned();
    m.exec(
        "INSERT INTO palisade_registry_history (tenant, name, seq, action, version, stack, actor, time_ms) VALUES ($1, $2, CAST(CAST($3 AS TEXT) AS BIGINT), $4, $5, $6, $7, CAST(CAST($8 AS TEXT) AS BIGINT))",
        &[
            tenant,
            name,
            &(seq + 1).to_string(),
            action,
            top.as_deref().unwrap_or(""),
            &stack.join(" "),
            actor,
            &now_ms.to_string(),
        ],
    )?;
    Ok(Done::Active(
        top,
        Undo {
            seq: Some(seq + 1),
            before,
        },
    ))
}

/// `tenant`'s module `name`'s history, newest first.
pub(super) fn read(m: &mut Conn, tenant: &str, name: &str) -> Result<Vec<Entry>, String> {
    let rows = m.rows(
        "SELECT CAST(seq AS TEXT), action, version, actor, CAST(time_ms AS TEXT) FROM palisade_registry_history WHERE tenant = $1 AND name = $2 ORDER BY seq DESC",
        &[tenant, name],
    )?;
    rows.into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let number = |i: usize| {
                text(i)
                    .parse::<u64>()
                    .map_err(|_| format!("registry history: column {i} is not a number"))
            };
            Ok(Entry {
                seq: number(0)?,
                action: text(1),
                version: Some(text(2)).filter(|v| !v.is_empty()),
                actor: text(3),
                time_ms: number(4)?,
            })
        })
        .collect()
}
