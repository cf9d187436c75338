//! Human tables and JSON.

use authz_client::proto;
use serde_json::{Value, json};

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A list for a table cell: comma-separated, `-` when empty.
pub fn cell(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// A list for a table cell of a preview: the first few, then how many more (JSON has all).
pub fn short(items: &[String]) -> String {
    const SHOWN: usize = 4;
    if items.len() <= SHOWN {
        return cell(items);
    }
    format!(
        "{}, ... ({} in all)",
        items[..SHOWN].join(", "),
        items.len()
    )
}

pub fn resource(r: &Option<proto::Resource>) -> Value {
    match r {
        Some(r) => json!({"type": r.r#type, "id": r.id}),
        None => Value::Null,
    }
}

pub fn restriction_denial(d: &Option<proto::RestrictionDenial>) -> Value {
    match d {
        Some(d) => json!({
            "resource_type": d.resource_type,
            "allowed_ids": d.allowed_ids,
            "allowed_count": d.allowed_count,
        }),
        None => Value::Null,
    }
}

pub fn explanation(e: &Option<proto::Explanation>) -> Value {
    match e {
        Some(e) => json!({
            "summary": e.summary,
            "user_status": e.user_status,
            "permissions": e.permissions.iter().map(|p| json!({
                "permission": p.permission, "held": p.held, "sources": p.sources,
            })).collect::<Vec<_>>(),
            "denied_by_restriction": resource(&e.denied_by_restriction),
            "failed_parts": e.failed_parts,
        }),
        None => Value::Null,
    }
}

/// The lines of an explanation, indented, for tables.
pub fn explanation_text(e: &proto::Explanation) -> String {
    let mut out = format!("  {}\n  user: {}\n", e.summary, e.user_status);
    for p in &e.permissions {
        out.push_str(&format!(
            "  {} {}{}\n",
            if p.held { "held   " } else { "missing" },
            p.permission,
            if p.sources.is_empty() {
                String::new()
            } else {
                format!(" (from {})", p.sources.join(", "))
            }
        ));
    }
    if !e.failed_parts.is_empty() {
        out.push_str(&format!("  failing: {}\n", e.failed_parts.join("; ")));
    }
    out
}

pub fn preview(p: &Option<proto::Preview>) -> Value {
    let Some(p) = p else { return Value::Null };
    json!({
        "affected_users": p.affected_users.iter().map(affected).collect::<Vec<_>>(),
        "truncated": p.truncated,
    })
}

fn affected(u: &proto::AffectedUser) -> Value {
    let scoped = |l: &[proto::ScopedGrant]| -> Vec<String> {
        l.iter()
            .map(|g| {
                let r = g.resource.clone().unwrap_or_default();
                format!("{}@{}:{}", g.permission, r.r#type, r.id)
            })
            .collect()
    };
    json!({
        "user_id": u.user_id,
        "added": u.added,
        "removed": u.removed,
        "roles_added": u.roles_added,
        "roles_removed": u.roles_removed,
        "scoped_added": scoped(&u.scoped_added),
        "scoped_removed": scoped(&u.scoped_removed),
        "limits": u.limits.iter().map(|l| json!({
            "resource_type": l.resource_type,
            "before": l.limited_before.then_some(&l.before_ids),
            "after": l.limited_after.then_some(&l.after_ids),
        })).collect::<Vec<_>>(),
    })
}

/// The affected users of a preview as a table.
pub fn preview_text(p: &Option<proto::Preview>) -> String {
    let Some(p) = p else {
        return "no users affected\n".to_owned();
    };
    if p.affected_users.is_empty() {
        return "no users affected\n".to_owned();
    }
    let rows: Vec<Vec<String>> = p
        .affected_users
        .iter()
        .map(|u| {
            let v = affected(u);
            let list = |k: &str| {
                let items: Vec<String> = v[k]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                short(&items)
            };
            let mut gains = list("added");
            let mut losses = list("removed");
            for (k, into) in [
                ("scoped_added", &mut gains),
                ("scoped_removed", &mut losses),
            ] {
                let more = list(k);
                if more != "-" {
                    *into = if *into == "-" {
                        more
                    } else {
                        format!("{into}, {more}")
                    };
                }
            }
            vec![
                u.user_id.clone(),
                gains,
                losses,
                cell(&u.roles_added),
                cell(&u.roles_removed),
                if u.limits.is_empty() {
                    "-".to_owned()
                } else {
                    u.limits
                        .iter()
                        .map(|l| l.resource_type.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]
        })
        .collect();
    let mut out = table(
        &["USER", "GAINS", "LOSES", "ROLES+", "ROLES-", "LIMITS"],
        &rows,
    );
    if p.truncated {
        out.push_str("(more users are affected than a preview lists)\n");
    }
    out
}

/// A protobuf Struct as JSON.
pub fn structure(s: &Option<prost_types::Struct>) -> Value {
    match s {
        Some(s) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect(),
        ),
        None => Value::Null,
    }
}

fn value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                json!(n)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect(),
        ),
    }
}

/// A timestamp as RFC 3339 in UTC (`2026-05-20T10:04:05Z`).
pub fn time(t: &Option<prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return "-".to_owned();
    };
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Reads `2026-05-20T10:04:05Z` (UTC, seconds optional fraction ignored), or a duration ago
/// (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<prost_types::Timestamp, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let bad = || {
        format!(
            "{text:?} is not a time: write 2026-05-20T10:04:05Z (UTC) or a duration ago (90s, 15m, 2h, 7d)"
        )
    };
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = text[..text.len() - 1].parse::<i64>() {
            let per = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Ok(prost_types::Timestamp {
                seconds: now - n * per,
                nanos: 0,
            });
        }
    }
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = t.split_once('T').ok_or_else(bad)?;
    let clock = clock.split('.').next().unwrap_or_default();
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || c.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi, s) = (num(c[0])?, num(c[1])?, num(c[2])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    Ok(prost_types::Timestamp {
        seconds: days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + s,
        nanos: 0,
    })
}

// Howard Hinnant's civil-calendar conversions (public-domain algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_print_in_utc() {
        let t = parse_time("2026-05-20T10:04:05Z").unwrap();
        assert_eq!(t.seconds, 1_779_271_445);
        assert_eq!(time(&Some(t)), "2026-05-20T10:04:05Z");
        assert_eq!(
            time(&Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0
            })),
            "1970-01-01T00:00:00Z"
        );
        assert!(parse_time("yesterday").unwrap_err().contains("not a time"));
        assert!(parse_time("2h").is_ok());
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
