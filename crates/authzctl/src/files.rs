//! Batch and import files: CSV with a header row, or JSON.

use authz_client::BatchItem;
use std::collections::BTreeMap;

/// A file that cannot be used, with what to fix (exit code 2).
#[derive(Debug)]
pub struct FileError(pub String);

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a file, or standard input for `-`.
pub fn read(path: &str) -> Result<String, FileError> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| FileError(format!("cannot read standard input: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| FileError(format!("cannot read {path}: {e}")))
}

/// One batch item as a person writes it, and how it is shown back.
#[derive(Clone, Debug)]
pub struct Item {
    pub user: String,
    /// "permission", "action" or "expression", and its text.
    pub target: (&'static str, String),
    pub resource: Option<(String, String)>,
    pub context: BTreeMap<String, bool>,
    pub explain: bool,
}

impl Item {
    pub fn to_batch_item(&self) -> BatchItem {
        let mut item = match self.target.0 {
            "action" => BatchItem::action(&self.user, &self.target.1),
            "expression" => BatchItem::expression(&self.user, &self.target.1),
            _ => BatchItem::permission(&self.user, &self.target.1),
        };
        if let Some((t, id)) = &self.resource {
            item = item.resource(t, id);
        }
        for (k, v) in &self.context {
            item = item.context(k, *v);
        }
        if self.explain {
            item = item.explain();
        }
        item
    }
}

/// `TYPE:ID`.
pub fn resource(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((t, id)) if !t.is_empty() && !id.is_empty() => Ok((t.to_owned(), id.to_owned())),
        _ => Err(format!("resource {text:?} is not TYPE:ID (e.g. folder:f1)")),
    }
}

/// `FLAG=true` / `FLAG=false`.
pub fn flag(text: &str) -> Result<(String, bool), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("context {text:?} is not FLAG=true or FLAG=false"))?;
    let v = match v.trim() {
        "true" | "1" | "yes" => true,
        "false" | "0" | "no" => false,
        other => return Err(format!("context flag {k}: {other:?} is not true or false")),
    };
    Ok((k.trim().to_owned(), v))
}

fn target(
    permission: Option<String>,
    action: Option<String>,
    expression: Option<String>,
) -> Result<(&'static str, String), String> {
    let set: Vec<(&'static str, String)> = [
        ("permission", permission),
        ("action", action),
        ("expression", expression),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect();
    match <[_; 1]>::try_from(set) {
        Ok([one]) => Ok(one),
        Err(set) if set.is_empty() => {
            Err("names no permission, action or expression: give exactly one".to_owned())
        }
        Err(_) => Err("names more than one of permission, action, expression: give one".to_owned()),
    }
}

/// A batch file: CSV (`user,permission,action,expression,resource,context,explain`; only `user`
/// and one target column are needed; `context` is `flag=true;flag=false`) or JSON (an array of
/// objects with the same names; `resource` "type:id" or {"type","id"}, `context` an object).
pub fn batch(text: &str, json: bool) -> Result<Vec<Item>, FileError> {
    if json {
        batch_json(text)
    } else {
        batch_csv(text)
    }
}

fn batch_csv(text: &str) -> Result<Vec<Item>, FileError> {
    const COLUMNS: [&str; 7] = [
        "user",
        "permission",
        "action",
        "expression",
        "resource",
        "context",
        "explain",
    ];
    let (header, rows) = csv_rows(text, &COLUMNS, &["user"])?;
    let col = |row: &csv::StringRecord, name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in rows {
        let item = (|| {
            let user = col(&row, "user").ok_or("user is empty")?;
            let target = target(
                col(&row, "permission"),
                col(&row, "action"),
                col(&row, "expression"),
            )?;
            let resource = col(&row, "resource").map(|r| resource(&r)).transpose()?;
            let mut context = BTreeMap::new();
            for f in col(&row, "context").iter().flat_map(|c| c.split(';')) {
                if !f.trim().is_empty() {
                    let (k, v) = flag(f)?;
                    context.insert(k, v);
                }
            }
            let explain = col(&row, "explain").is_some_and(|e| e == "true" || e == "1");
            Ok::<_, String>(Item {
                user,
                target,
                resource,
                context,
                explain,
            })
        })();
        match item {
            Ok(i) => items.push(i),
            Err(e) => problems.push(format!("line {line}: {e}")),
        }
    }
    done(items, problems)
}

fn batch_json(text: &str) -> Result<Vec<Item>, FileError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FileError(format!("not JSON: {e}")))?;
    let list = value
        .as_array()
        .ok_or_else(|| FileError("a JSON batch is an array of items".to_owned()))?;
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (n, v) in list.iter().enumerate() {
        let item = (|| {
            let o = v.as_object().ok_or("is not an object")?;
            for k in o.keys() {
                if ![
                    "user",
                    "permission",
                    "action",
                    "expression",
                    "resource",
                    "context",
                    "explain",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!("unknown field {k:?}"));
                }
            }
            let s = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let user = s("user")
                .filter(|u| !u.is_empty())
                .ok_or("user is missing")?;
            let target = target(s("permission"), s("action"), s("expression"))?;
            let resource = match o.get("resource") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(r)) => Some(resource(r)?),
                Some(serde_json::Value::Object(r)) => Some((
                    r.get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    r.get("id")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                )),
                Some(_) => {
                    return Err("resource is not \"type:id\" or {\"type\", \"id\"}".to_owned());
                }
            };
            let mut context = BTreeMap::new();
            if let Some(c) = o.get("context") {
                let c = c.as_object().ok_or("context is not an object of flags")?;
                for (k, v) in c {
                    let v = v
                        .as_bool()
                        .ok_or(format!("context flag {k} is not true or false"))?;
                    context.insert(k.clone(), v);
                }
            }
            let explain = o.get("explain").and_then(|e| e.as_bool()).unwrap_or(false);
            Ok::<_, String>(Item {
                user,
                target,
                resource,
                context,
                explain,
            })
        })();
        match item {
            Ok(i) => items.push(i),
            Err(e) => problems.push(format!("item {n}: {e}")),
        }
    }
    done(items, problems)
}

/// One user of an import: Maestra's bulk staff import names each user and the system names of
/// its groups.
#[derive(Clone, Debug, Default)]
pub struct ImportUser {
    pub user: String,
    pub display_name: String,
    pub email: String,
    pub groups: Vec<String>,
    pub permissions: Vec<String>,
}

/// An import file, CSV with a header: `user` and `groups` (group system names, separated by
/// `;`, `,` or spaces inside the field), optionally `name`, `email`, `permissions`. Rows of the
/// same user add up.
pub fn import(text: &str) -> Result<Vec<ImportUser>, FileError> {
    const COLUMNS: [&str; 5] = ["user", "groups", "name", "email", "permissions"];
    let (header, rows) = csv_rows(text, &COLUMNS, &["user"])?;
    let col = |row: &csv::StringRecord, name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let list = |s: String| -> Vec<String> {
        s.split([';', ',', ' '])
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut users: Vec<ImportUser> = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in rows {
        let user = col(&row, "user");
        if user.is_empty() {
            problems.push(format!("line {line}: user is empty"));
            continue;
        }
        let at = match users.iter().position(|u| u.user == user) {
            Some(i) => i,
            None => {
                users.push(ImportUser {
                    user: user.clone(),
                    ..Default::default()
                });
                users.len() - 1
            }
        };
        let u = &mut users[at];
        let (name, email) = (col(&row, "name"), col(&row, "email"));
        if !name.is_empty() {
            u.display_name = name;
        }
        if !email.is_empty() {
            u.email = email;
        }
        for g in list(col(&row, "groups")) {
            if !u.groups.contains(&g) {
                u.groups.push(g);
            }
        }
        for p in list(col(&row, "permissions")) {
            if !u.permissions.contains(&p) {
                u.permissions.push(p);
            }
        }
    }
    done(users, problems)
}

/// The header (lower-cased, with aliases resolved) and the rows with their line numbers.
type Rows = (Vec<String>, Vec<(u64, csv::StringRecord)>);

fn csv_rows(text: &str, known: &[&str], required: &[&str]) -> Result<Rows, FileError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| FileError(format!("cannot read the CSV header: {e}")))?
        .iter()
        .map(|h| match h.to_ascii_lowercase().as_str() {
            "user_id" => "user".to_owned(),
            "group" | "group_keys" | "group_system_names" | "system_names" => "groups".to_owned(),
            "display_name" => "name".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let unknown: Vec<&String> = header
        .iter()
        .filter(|h| !known.contains(&h.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(FileError(format!(
            "unknown CSV columns {unknown:?}; the columns are {}",
            known.join(", ")
        )));
    }
    for r in required {
        if !header.iter().any(|h| h == r) {
            return Err(FileError(format!(
                "the CSV header has no {r:?} column; the columns are {}",
                known.join(", ")
            )));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| FileError(format!("bad CSV: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push((line, record));
    }
    Ok((header, rows))
}

fn done<T>(items: Vec<T>, problems: Vec<String>) -> Result<Vec<T>, FileError> {
    if !problems.is_empty() {
        return Err(FileError(problems.join("\n")));
    }
    if items.is_empty() {
        return Err(FileError("the file holds no rows".to_owned()));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_csv_reads_targets_resources_and_context() {
        let items = batch(
            "user,permission,action,resource,context\n\
             alice,view_reports,,folder:f1,\n\
             bob,,flows.add_a_flow,,multibrand=false\n",
            false,
        )
        .unwrap();
        assert_eq!(items[0].target, ("permission", "view_reports".to_owned()));
        assert_eq!(items[0].resource, Some(("folder".into(), "f1".into())));
        assert_eq!(items[1].context.get("multibrand"), Some(&false));
    }

    #[test]
    fn every_bad_row_is_named_with_its_line() {
        let e = batch(
            "user,permission,action\nalice,,\nbob,a,b\n,view_reports,\n",
            false,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("line 2: names no permission"), "{e}");
        assert!(e.contains("line 3: names more than one"), "{e}");
        assert!(e.contains("line 4: user is empty"), "{e}");
        let e = batch("user,perm\nalice,x\n", false).unwrap_err().0;
        assert!(e.contains("unknown CSV columns [\"perm\"]"), "{e}");
        let e = batch(
            "[{\"user\":\"a\",\"permission\":\"p\",\"resorce\":\"x\"}]",
            true,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("item 0: unknown field \"resorce\""), "{e}");
    }

    #[test]
    fn import_rows_of_one_user_add_up() {
        let users = import(
            "user_id,group_system_names,email\n\
             dan,marketers;analysts,dan@acme.test\n\
             dan,api,\n\
             eve,analysts,\n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].groups, ["marketers", "analysts", "api"]);
        assert_eq!(users[0].email, "dan@acme.test");
    }
}
