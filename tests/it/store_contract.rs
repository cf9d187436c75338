//! The store contract, asked of each store directly — the embedded store, Postgres, and Postgres
//! behind the per-replica cache — beneath the application and the gRPC edge: every engine
//! answers the same calls the same way.

use crate::helpers::{MAESTRA, MAX_STALENESS};
use authz::open::{OpenedStore, PostgresConfig, StoreConfig, open_store};
use authz::store::cached::CacheOptions;
use authz::store::listener::ListenerOptions;
use authz::store::memory::MemoryStore;
use authz::store::postgres::{PgOptions, PostgresStore};
use authz::store::{
    Consistency, GroupDef, GroupPatch, GroupRef, Store, StoreError, Touched, Write, WriteCtx,
    Written,
};
use authz_core::Catalog;
use authz_core::admin::{AdminOp, Effect, Rule};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum Engine {
    Memory,
    Postgres,
    Cached,
}

const ENGINES: [Engine; 3] = [Engine::Memory, Engine::Postgres, Engine::Cached];

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::from_toml(MAESTRA).unwrap())
}

/// A fresh store of this engine with tenant `t`.
async fn store(engine: Engine) -> Arc<dyn Store> {
    let catalog = catalog();
    let store: Arc<dyn Store> = match engine {
        Engine::Memory => Arc::new(MemoryStore::new(catalog)),
        Engine::Postgres => {
            let (url, _) = crate::pg::fresh_database().await;
            let pg = PostgresStore::new(catalog, &PgOptions::new(url)).unwrap();
            pg.migrate().await.unwrap();
            pg.reconcile().await.unwrap();
            Arc::new(pg)
        }
        Engine::Cached => {
            // Opened as `authzd` opens it.
            let (url, _) = crate::pg::fresh_database().await;
            let config = PostgresConfig {
                migrate: true,
                cache: CacheOptions {
                    max_staleness: MAX_STALENESS,
                    listener: ListenerOptions {
                        heartbeat: Duration::from_millis(100),
                        ..ListenerOptions::default()
                    },
                    ..CacheOptions::default()
                },
                ..PostgresConfig::new(url)
            };
            let OpenedStore::Postgres(cached) = open_store(StoreConfig::Postgres(config), catalog)
                .await
                .unwrap()
            else {
                unreachable!("a Postgres configuration opens Postgres")
            };
            crate::daemon::eventually("the listener subscribes", || {
                let c = cached.clone();
                async move { c.listener().connected().then_some(()) }
            })
            .await;
            cached
        }
    };
    store.create_tenant("t", "T").await.unwrap();
    store
}

fn operator() -> WriteCtx {
    WriteCtx {
        actor: None,
        rule: Rule::default(),
        dry_run: false,
    }
}

fn dry_run() -> WriteCtx {
    WriteCtx {
        dry_run: true,
        ..operator()
    }
}

fn perms(keys: &[&str]) -> authz_core::PermSet {
    let c = catalog();
    keys.iter().map(|k| c.resolve(k).unwrap()).collect()
}

fn group(key: &str, keys: &[&str]) -> GroupDef {
    GroupDef {
        key: key.into(),
        name: key.into(),
        description: String::new(),
        permissions: perms(keys),
        scoped: Vec::new(),
    }
}

async fn holds(store: &dyn Store, user: &str, key: &str) -> bool {
    let (subject, _) = store.subject("t", user, Consistency::Full).await.unwrap();
    subject.has(catalog().resolve(key).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_returns_its_revision_preview_and_what_it_touched() {
    for engine in ENGINES {
        let s = store(engine).await;
        let base = s.records().get_tenant("t").await.unwrap().revision;
        let grants = authz::store::Grants::Unscoped(perms(&["view_reports"]));
        let out = s
            .write(
                "t",
                &operator(),
                Write::Grant {
                    user_id: "ann",
                    grants: &grants,
                },
            )
            .await
            .unwrap();
        assert_eq!(out.revision, base + 1, "{engine:?}");
        assert_eq!(
            out.touched,
            Touched::users(["ann".to_owned()]),
            "{engine:?}"
        );
        let affected = &out.preview.affected_users;
        assert_eq!(affected.len(), 1, "{engine:?}");
        assert_eq!(affected[0].user_id, "ann");
        assert!(holds(&*s, "ann", "view_reports").await, "{engine:?}");
        let changes = s.records().changes_since("t", base, 10).await.unwrap();
        assert_eq!(changes.len(), 1, "{engine:?}");
        assert_eq!(changes[0].operation, "grant");
        assert_eq!(changes[0].target, "user:ann");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_previews_and_changes_nothing() {
    for engine in ENGINES {
        let s = store(engine).await;
        s.write(
            "t",
            &operator(),
            Write::CreateGroup {
                def: group("editors", &["edit_flows"]),
            },
        )
        .await
        .unwrap();
        let base = s.records().get_tenant("t").await.unwrap().revision;
        let users = vec!["bob".to_owned()];
        let out = s
            .write(
                "t",
                &dry_run(),
                Write::AddMembers {
                    group: GroupRef::Custom("editors"),
                    user_ids: &users,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            out.revision, base,
            "{engine:?}: a dry run reports the revision it saw"
        );
        assert_eq!(out.preview.affected_users[0].user_id, "bob", "{engine:?}");
        assert_eq!(
            s.records().get_tenant("t").await.unwrap().revision,
            base,
            "{engine:?}"
        );
        assert!(!holds(&*s, "bob", "edit_flows").await, "{engine:?}");
        assert_eq!(
            s.records().member_count("t", "editors").await.unwrap(),
            0,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_writes_check_versions_and_emptiness() {
    for engine in ENGINES {
        let s = store(engine).await;
        let created = s
            .write(
                "t",
                &operator(),
                Write::CreateGroup {
                    def: group("editors", &["edit_flows"]),
                },
            )
            .await
            .unwrap()
            .group()
            .unwrap();
        assert_eq!(created.value.version, 1, "{engine:?}");
        let again = s
            .write(
                "t",
                &operator(),
                Write::CreateGroup {
                    def: group("editors", &["view_reports"]),
                },
            )
            .await;
        assert!(
            matches!(again, Err(StoreError::GroupExists(ref k)) if k == "editors"),
            "{engine:?}: {again:?}"
        );
        let patch = || GroupPatch {
            permissions: Some(perms(&["edit_flows", "view_reports"])),
            ..GroupPatch::default()
        };
        let stale = s
            .write(
                "t",
                &operator(),
                Write::UpdateGroup {
                    key: "editors",
                    patch: patch(),
                    expected_version: Some(7),
                },
            )
            .await;
        assert!(
            matches!(
                stale,
                Err(StoreError::VersionMismatch {
                    expected: 7,
                    actual: 1,
                    ..
                })
            ),
            "{engine:?}: {stale:?}"
        );
        let updated = s
            .write(
                "t",
                &operator(),
                Write::UpdateGroup {
                    key: "editors",
                    patch: patch(),
                    expected_version: Some(1),
                },
            )
            .await
            .unwrap()
            .group()
            .unwrap();
        assert_eq!(updated.value.version, 2, "{engine:?}");
        assert_eq!(updated.touched, Touched::group("editors"), "{engine:?}");
        let users = vec!["ann".to_owned()];
        s.write(
            "t",
            &operator(),
            Write::AddMembers {
                group: GroupRef::Custom("editors"),
                user_ids: &users,
            },
        )
        .await
        .unwrap();
        let busy = s
            .write(
                "t",
                &operator(),
                Write::DeleteGroup {
                    key: "editors",
                    expected_version: None,
                },
            )
            .await;
        assert!(
            matches!(busy, Err(StoreError::GroupNotEmpty { members: 1, .. })),
            "{engine:?}: {busy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_touches_exactly_the_members_it_copies() {
    for engine in ENGINES {
        let s = store(engine).await;
        let users = vec!["ann".to_owned(), "bob".to_owned()];
        s.write(
            "t",
            &operator(),
            Write::AddMembers {
                group: GroupRef::System("analysts"),
                user_ids: &users,
            },
        )
        .await
        .unwrap();
        let out = s
            .write(
                "t",
                &operator(),
                Write::DuplicateGroup {
                    def: group("analysts_copy", &["view_reports"]),
                    members_of: Some("analysts"),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            out.touched,
            Touched {
                users: users.clone(),
                groups: vec!["analysts_copy".into()],
                all_users: false,
            },
            "{engine:?}"
        );
        let Written::Group(g) = out.value else {
            panic!("{engine:?}: a duplicate returns its group");
        };
        assert_eq!(g.member_count, 2, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actors_write_is_decided_by_the_store_inside_the_write() {
    for engine in ENGINES {
        let s = store(engine).await;
        let users = vec!["ann".to_owned()];
        let actor = WriteCtx {
            actor: Some("mallory".into()),
            rule: Rule::new(
                AdminOp::EditUsers,
                Effect::Assign {
                    group: "owners".into(),
                    users: users.clone(),
                },
            ),
            dry_run: false,
        };
        let refused = s
            .write(
                "t",
                &actor,
                Write::AddMembers {
                    group: GroupRef::System("owners"),
                    user_ids: &users,
                },
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Denied(_))),
            "{engine:?}: an actor holding nothing may not make owners: {refused:?}"
        );
        assert_eq!(
            s.records().member_count("t", "owners").await.unwrap(),
            0,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenants_users_and_groups_are_named() {
    for engine in ENGINES {
        let s = store(engine).await;
        let grants = authz::store::Grants::Unscoped(perms(&["view_reports"]));
        let no_tenant = s
            .write(
                "nope",
                &operator(),
                Write::Grant {
                    user_id: "ann",
                    grants: &grants,
                },
            )
            .await;
        assert!(
            matches!(no_tenant, Err(StoreError::TenantNotFound(ref t)) if t == "nope"),
            "{engine:?}: {no_tenant:?}"
        );
        let no_user = s
            .write(
                "t",
                &operator(),
                Write::Revoke {
                    user_id: "ghost",
                    grants: &grants,
                },
            )
            .await;
        assert!(
            matches!(no_user, Err(StoreError::UserNotFound(ref u)) if u == "ghost"),
            "{engine:?}: {no_user:?}"
        );
        let users = vec!["ann".to_owned()];
        let no_group = s
            .write(
                "t",
                &operator(),
                Write::AddMembers {
                    group: GroupRef::Custom("nope"),
                    user_ids: &users,
                },
            )
            .await;
        assert!(
            matches!(no_group, Err(StoreError::GroupNotFound(ref g)) if g == "nope"),
            "{engine:?}: {no_group:?}"
        );
        let (subject, _) = s.subject("t", "ghost", Consistency::Full).await.unwrap();
        assert!(
            subject.user.is_none(),
            "{engine:?}: an unknown user holds nothing"
        );
    }
}
