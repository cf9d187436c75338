//! NOTIFY payloads: what a committed write tells every replica's listener.
//!
//! Postgres caps a payload at 8000 bytes. A payload that would pass [`MAX_PAYLOAD`] is made
//! coarser — users become "all users of the tenant", then groups "all groups" — never dropped.

use super::{Revision, Touched};
use serde::{Deserialize, Serialize};

/// The channel every write notifies and every listener listens on.
pub const CHANNEL: &str = "authz_changes";
/// The largest payload sent; far under Postgres's 8000-byte limit.
pub const MAX_PAYLOAD: usize = 4000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Tenant.
    pub t: String,
    /// Revision committed.
    pub r: Revision,
    /// Users whose grants changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub u: Vec<String>,
    /// Custom groups whose grants changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub g: Vec<String>,
    /// Every user of the tenant may have changed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub au: bool,
    /// Every group of the tenant may have changed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ag: bool,
    /// When the write committed, in milliseconds since the Unix epoch (for invalidation lag).
    #[serde(default)]
    pub ts: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Notice {
    pub fn new(tenant_id: &str, revision: Revision, touched: &Touched) -> Self {
        Notice {
            t: tenant_id.to_owned(),
            r: revision,
            u: if touched.all_users {
                Vec::new()
            } else {
                touched.users.clone()
            },
            g: touched.groups.clone(),
            au: touched.all_users,
            ag: false,
            ts: now_ms(),
        }
    }

    /// The payload to send: this notice, made coarser until it fits.
    pub fn encode(mut self) -> String {
        let mut text = self.to_json();
        if text.len() > MAX_PAYLOAD {
            self.u.clear();
            self.au = true;
            text = self.to_json();
        }
        if text.len() > MAX_PAYLOAD {
            self.g.clear();
            self.ag = true;
            text = self.to_json();
        }
        text
    }

    fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(payload: &str) -> Result<Notice, String> {
        serde_json::from_str(payload).map_err(|e| format!("invalid notification payload: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let n = Notice::new(
            "acme",
            7,
            &Touched::users(["u1".to_string(), "u2".to_string()]),
        );
        let text = n.clone().encode();
        assert_eq!(Notice::decode(&text).unwrap(), n);
        assert!(Notice::decode("{").is_err());
        assert!(Notice::decode("{\"r\":1}").is_err(), "a tenant is required");
    }

    #[test]
    fn bulk_changes_become_coarse_never_dropped() {
        let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let n = Notice::new(
            "acme",
            9,
            &Touched {
                users,
                groups: vec!["g".into()],
                all_users: false,
            },
        );
        let text = n.encode();
        assert!(text.len() <= MAX_PAYLOAD);
        let d = Notice::decode(&text).unwrap();
        assert!(d.au && d.u.is_empty());
        assert_eq!(d.g, ["g"]);
        let groups: Vec<String> = (0..10_000).map(|i| format!("group-{i}")).collect();
        let d = Notice::decode(
            &Notice::new(
                "acme",
                9,
                &Touched {
                    users: vec![],
                    groups,
                    all_users: false,
                },
            )
            .encode(),
        )
        .unwrap();
        assert!(d.ag && d.g.is_empty());
    }
}
