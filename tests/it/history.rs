//! Concurrent admin writes, replayed in revision order through a model of plain sets: no
//! committed write may be one the model refuses at that point of the history.
//!
//! An operator and two actors write at once (on Postgres through two replicas of one database):
//! the operator gives and takes the actors' permissions, memberships and status, and edits the
//! group; the actors give, take, assign and block within what they hold at that moment. Every
//! refusal is fine; what matters is that each write that did commit was allowed by the state
//! the writes before it (in revision order) left behind. The model also checks that each write's
//! audit "before" is exactly what the writes before it left (no lost or reordered write).

use crate::helpers::*;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use tonic::transport::Channel;
use tonic::{Code, Status};

const PERMS: [&str; 3] = ["view_reports", "export_customers", "delete_customers"];
const ACTORS: [&str; 2] = ["a1", "a2"];
const VICTIMS: [&str; 2] = ["v1", "v2"];

/// A small deterministic generator (xorshift), seeded per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

async fn write(mut c: AdminServiceClient<Channel>, who: &str, rng: &mut Rng) -> Result<(), Status> {
    let actor = if who == "operator" { "" } else { who };
    let t = || "t".to_owned();
    let targets: Vec<&str> = if actor.is_empty() {
        ACTORS.to_vec()
    } else {
        VICTIMS.iter().chain(ACTORS.iter()).copied().collect()
    };
    let user = rng.pick(&targets).to_owned();
    let perm = rng.pick(&PERMS).to_owned();
    let status = |s: pb::UserStatus| pb::SetUserStatusRequest {
        tenant_id: t(),
        user_id: user.clone(),
        status: s.into(),
        actor_user_id: actor.into(),
        ..Default::default()
    };
    let choices = if actor.is_empty() { 7 } else { 6 };
    match rng.next() % choices {
        0 => c
            .grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: t(),
                user_id: user,
                permissions: vec![perm],
                actor_user_id: actor.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        1 => c
            .revoke_permissions(pb::RevokePermissionsRequest {
                tenant_id: t(),
                user_id: user,
                permissions: vec![perm],
                actor_user_id: actor.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        2 => c
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: t(),
                group_key: "g".into(),
                user_ids: vec![user],
                actor_user_id: actor.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        3 => c
            .remove_group_members(pb::RemoveGroupMembersRequest {
                tenant_id: t(),
                group_key: "g".into(),
                user_ids: vec![user],
                actor_user_id: actor.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        4 => c
            .set_user_status(status(pb::UserStatus::Blocked))
            .await
            .map(drop),
        5 => c
            .set_user_status(status(pb::UserStatus::Active))
            .await
            .map(drop),
        _ => {
            let permissions = PERMS
                .iter()
                .filter(|_| rng.next() % 2 == 0)
                .map(|p| p.to_string())
                .collect();
            c.update_group(pb::UpdateGroupRequest {
                tenant_id: t(),
                group_key: "g".into(),
                group: Some(pb::Group {
                    permissions,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
                ..Default::default()
            })
            .await
            .map(drop)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct User {
    direct: BTreeSet<String>,
    groups: BTreeSet<String>,
    blocked: bool,
}

/// The model: users and the custom group's permissions, as plain sets.
#[derive(Default)]
struct Model {
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, BTreeSet<String>>,
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn user_of(v: &Value) -> Option<User> {
    if v.is_null() {
        return None;
    }
    Some(User {
        direct: strings(&v["direct"]),
        groups: strings(&v["groups"]),
        blocked: v["status"] == "blocked",
    })
}

impl Model {
    /// What a user holds while active (the catalog's system groups are not used here).
    fn holds(&self, id: &str) -> BTreeSet<String> {
        let Some(u) = self.users.get(id) else {
            return BTreeSet::new();
        };
        let mut out = u.direct.clone();
        for g in &u.groups {
            out.extend(self.groups.get(g).into_iter().flatten().cloned());
        }
        out
    }

    fn active(&self, id: &str) -> bool {
        self.users.get(id).is_some_and(|u| !u.blocked)
    }

    /// Why the model refuses `change` by `actor`, if it does.
    fn refuses(&self, actor: &str, change: &authz::store::Change) -> Option<String> {
        if !self.active(actor) {
            return Some(format!("{actor} is blocked or unknown"));
        }
        let own = self.holds(actor);
        let lacks = |needed: &BTreeSet<String>| -> Option<String> {
            let missing: Vec<&String> = needed.difference(&own).collect();
            (!missing.is_empty()).then(|| format!("{actor} lacks {missing:?}"))
        };
        let op: BTreeSet<String> = match change.operation.as_str() {
            "set_user_status" => ["view_users", "edit_users"].map(String::from).into(),
            _ => ["edit_users"].map(String::from).into(),
        };
        if let Some(why) = lacks(&op) {
            return Some(why);
        }
        let touched = |side: &Value| -> Vec<(String, Option<User>)> {
            side["users"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, v)| (id.clone(), user_of(v)))
                .collect()
        };
        let before = touched(&change.before);
        let after = touched(&change.after);
        match change.operation.as_str() {
            "grant" => {
                let (id, b) = &before[0];
                let a = after
                    .iter()
                    .find(|(i, _)| i == id)
                    .and_then(|(_, a)| a.clone());
                let given: BTreeSet<String> = a
                    .map(|a| a.direct)
                    .unwrap_or_default()
                    .difference(&b.clone().map(|b| b.direct).unwrap_or_default())
                    .cloned()
                    .collect();
                lacks(&given)
            }
            "add_members" => {
                let group = change.target.strip_prefix("group:").unwrap_or_default();
                let member = self
                    .users
                    .get(actor)
                    .is_some_and(|u| u.groups.contains(group));
                if member {
                    None
                } else {
                    lacks(&self.groups.get(group).cloned().unwrap_or_default())
                }
            }
            "revoke" | "remove_members" | "set_user_status" => {
                before.iter().find_map(|(id, _)| lacks(&self.holds(id)))
            }
            other => Some(format!("unexpected operation {other} by an actor")),
        }
    }

    /// Checks the write's "before" against the model, then applies its "after".
    fn apply(&mut self, change: &authz::store::Change) {
        for (side, value) in [("before", &change.before), ("after", &change.after)] {
            for (id, v) in value["users"].as_object().into_iter().flatten() {
                let u = user_of(v);
                if side == "before" {
                    assert_eq!(
                        self.users.get(id),
                        u.as_ref(),
                        "revision {}: {id} before is not what the writes before it left",
                        change.revision
                    );
                } else if let Some(u) = u {
                    self.users.insert(id.clone(), u);
                }
            }
            if side == "after" {
                for (key, v) in value["groups"].as_object().into_iter().flatten() {
                    if v.is_null() {
                        self.groups.remove(key);
                    } else {
                        self.groups.insert(key.clone(), strings(&v["permissions"]));
                    }
                }
            }
        }
    }
}

async fn concurrent_history_replays_without_a_refused_write(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let replica = match &app.db_url {
        Some(url) => Some(TestServer::postgres(url).start().await),
        None => None,
    };
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "g".into(),
                name: "g".into(),
                permissions: vec!["view_reports".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    for a in ACTORS {
        app.grant("t", a, &["edit_users", "view_users", "view_reports"], None)
            .await;
    }
    app.grant("t", "a1", &["export_customers"], None).await;
    for v in VICTIMS {
        app.grant("t", v, &["view_reports"], None).await;
    }

    let rounds = if crate::slow() { 400 } else { 80 };
    let mut workers = Vec::new();
    for (i, who) in ["operator", "a1", "a2"].into_iter().enumerate() {
        let clients = [
            app.admin.clone(),
            replica
                .as_ref()
                .map_or(app.admin.clone(), |r| r.admin.clone()),
        ];
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001));
            let (mut ok, mut refused) = (0u32, 0u32);
            for round in 0..rounds {
                let client = clients[(round + i) % 2].clone();
                match write(client, who, &mut rng).await {
                    Ok(()) => ok += 1,
                    Err(s) if s.code() == Code::PermissionDenied => refused += 1,
                    Err(s) => panic!("{who}: unexpected {s:?}"),
                }
            }
            (who, ok, refused)
        }));
    }
    let mut tally = Vec::new();
    for w in workers {
        let (who, ok, refused) = w.await.unwrap();
        tally.push(format!("{who}={ok}/{refused}"));
    }

    let changes = app
        .app
        .changes_since(&authz::ids::TenantId::parse("t", "t").unwrap(), 1, 100_000)
        .await
        .unwrap();
    let mut model = Model::default();
    let mut checked = 0;
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            assert_eq!(change.revision, changes[i - 1].revision + 1, "a gap");
        }
        if let Some(actor) = &change.actor {
            if let Some(why) = model.refuses(actor, change) {
                panic!(
                    "revision {} ({} by {actor} on {}) committed although {why}",
                    change.revision, change.operation, change.target
                );
            }
            checked += 1;
        }
        model.apply(change);
    }
    eprintln!(
        "FIGURES admin_history: rounds={} (committed/refused {}) replayed={} by_actors={checked} violations=0",
        rounds * 3,
        tally.join(" "),
        changes.len()
    );
    assert!(
        checked > 0,
        "the actors committed nothing: the history checks nothing"
    );
}

contract!(concurrent_history_replays_without_a_refused_write);
