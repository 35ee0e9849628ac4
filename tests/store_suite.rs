//! One store test suite, run in-process through `store::Backend` against both stores: the
//! SQLite store on its own threads and the PostgreSQL store on a test's own database. Each
//! case is a module with a `sqlite` and a `postgres` test.
//! See: issue 14 (item 2).

use std::sync::Arc;
use std::time::Duration;

use authhost::pool::StorePoolConfig;
use authhost::store::{
    Backend, ClientToken, NewToken, NewUser, PgBackend, PgOptions, SqliteBackend, SqliteStore, TokenGot,
    TokenSet, CHANGE_LOG_KEEP,
};

use crate::support::postgres::TestDb;

/// A store of the kind asked for, with what keeps it alive.
struct Fixture {
    store: Arc<dyn Backend>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDb>,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteStore::open(dir.path().join("t.db"), CHANGE_LOG_KEEP).unwrap();
    let store = SqliteBackend::start(&file, StorePoolConfig::new(2, 64)).unwrap();
    Fixture { store: Arc::new(store), _dir: Some(dir), _db: None }
}

fn postgres(test: &str) -> Option<Fixture> {
    let db = TestDb::create(test)?;
    let options = PgOptions {
        password: None,
        busy_timeout: Duration::from_secs(5),
        max_connections: 4,
        change_log_keep: CHANGE_LOG_KEEP,
    };
    let store = PgBackend::open(&db.url, &options).unwrap();
    Some(Fixture { store: Arc::new(store), _dir: None, _db: Some(db) })
}

fn user<'a>(name: &'a str, email: &'a str) -> NewUser<'a> {
    NewUser { username: name, password_hash: Some("$argon2id$hash"), is_active: true, is_staff: false, email }
}

macro_rules! store_suite {
    ($($name:ident($store:ident) $body:block)*) => {
        $(
            mod $name {
                use super::*;

                async fn case($store: &dyn Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    case(super::sqlite().store.as_ref()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(fixture) = super::postgres(stringify!($name)) else { return };
                    case(fixture.store.as_ref()).await;
                }
            }
        )*
    };
}

store_suite! {
    users_are_unique_found_by_name_and_by_email_without_case(store) {
        let alice = store.create_user(&user("alice", "Alice@Example.com")).await.unwrap().expect("created");
        assert_eq!((alice.username.as_str(), alice.is_active, alice.generation), ("alice", true, 0));
        assert!(store.create_user(&user("alice", "")).await.unwrap().is_none(), "a taken name");
        let (found, hash) = store.find_credentials("alice").await.unwrap().expect("found");
        assert_eq!((found.id, hash.as_deref()), (alice.id, Some("$argon2id$hash")));
        assert_eq!(store.find_credentials_by_email("alice@example.COM").await.unwrap().unwrap().0.id, alice.id);
        // An address two users share names no one.
        store.create_user(&user("alice2", "alice@example.com")).await.unwrap();
        assert!(store.find_credentials_by_email("alice@example.com").await.unwrap().is_none());
        assert!(store.find_user("nobody").await.unwrap().is_none());
        let names: Vec<String> = store.list_users().await.unwrap().iter().map(|u| u.username.to_string()).collect();
        assert_eq!(names, ["alice", "alice2"]);
    }

    a_new_password_ends_tokens_and_sessions_and_bumps_the_generation(store) {
        let alice = store.create_user(&user("alice", "")).await.unwrap().unwrap();
        let token = NewToken { digest: &[1; 32], nonce: None };
        assert_eq!(store.create_token("alice", &token, false).await.unwrap(), TokenSet::Created);
        store.create_session(alice.id, &[2; 32], "secret", i64::MAX / 2).await.unwrap();
        let before = store.last_change().await.unwrap();
        assert!(store.set_password("alice", "$argon2id$new").await.unwrap());
        assert!(store.find_token(&[1; 32], 0).await.unwrap().is_none());
        assert!(store.find_session(&[2; 32], 0).await.unwrap().is_none());
        assert_eq!(store.find_user("alice").await.unwrap().unwrap().generation, 1);
        let changes = store.changes_since(before).await.unwrap();
        assert_eq!((changes.users, changes.missed), (vec!["alice".to_owned()], false));
        assert!(!store.set_password("nobody", "x").await.unwrap());
    }

    deactivation_bumps_the_generation_and_reactivation_keeps_it(store) {
        store.create_user(&user("bob", "")).await.unwrap();
        assert!(store.set_active("bob", false).await.unwrap());
        assert!(store.set_active("bob", true).await.unwrap());
        let bob = store.find_user("bob").await.unwrap().unwrap();
        assert_eq!((bob.is_active, bob.generation), (true, 1));
        assert!(store.set_staff("bob", true).await.unwrap());
        assert!(store.set_email("bob", "bob@example.com").await.unwrap());
        let bob = store.find_user("bob").await.unwrap().unwrap();
        assert_eq!((bob.is_staff, bob.email.as_str()), (true, "bob@example.com"));
    }

    deleting_a_user_takes_their_tokens_and_sessions(store) {
        let carol = store.create_user(&user("carol", "")).await.unwrap().unwrap();
        store.create_token("carol", &NewToken { digest: &[3; 32], nonce: None }, false).await.unwrap();
        store.create_session(carol.id, &[4; 32], "s", i64::MAX / 2).await.unwrap();
        assert!(store.delete_user("carol").await.unwrap());
        assert!(store.find_token(&[3; 32], 0).await.unwrap().is_none());
        assert!(store.find_session(&[4; 32], 0).await.unwrap().is_none());
        assert!(!store.delete_user("carol").await.unwrap());
    }

    drf_tokens_are_got_or_created_once_and_replaced_on_demand(store) {
        store.create_user(&user("alice", "")).await.unwrap();
        let first = NewToken { digest: &[5; 32], nonce: Some(&[9; 16]) };
        assert_eq!(store.get_or_create_token("alice", &first).await.unwrap(), TokenGot::Created);
        let second = NewToken { digest: &[6; 32], nonce: Some(&[8; 16]) };
        assert_eq!(store.get_or_create_token("alice", &second).await.unwrap(), TokenGot::Existing { nonce: vec![9; 16] });
        assert_eq!(store.token_nonce("alice").await.unwrap(), Some(vec![9; 16]));
        assert_eq!(store.create_token("alice", &second, false).await.unwrap(), TokenSet::Exists);
        assert_eq!(store.create_token("alice", &second, true).await.unwrap(), TokenSet::Created);
        assert!(store.find_token(&[5; 32], 0).await.unwrap().is_none(), "replaced");
        assert_eq!(store.get_or_create_token("nobody", &first).await.unwrap(), TokenGot::NoSuchUser);
        assert_eq!(store.users_without_token().await.unwrap(), Vec::<String>::new());
        assert_eq!(store.delete_tokens("alice").await.unwrap(), 1);
        assert_eq!(store.users_without_token().await.unwrap(), vec!["alice".to_owned()]);
    }

    client_tokens_keep_the_limit_and_expired_ones_do_not_count(store) {
        let alice = store.create_user(&user("alice", "")).await.unwrap().unwrap();
        let now = 1_800_000_000;
        let digests = [[0u8; 32], [1; 32], [2; 32], [3; 32], [4; 32]];
        let token = |d: usize, expires| ClientToken { digest: &digests[d], client: Some("laptop"), expires, max_expires: None };
        // An expired one, then two live ones against a limit of two.
        assert!(store.create_client_token(alice.id, &token(1, Some(1)), 2).await.unwrap().is_some());
        let live = store.create_client_token(alice.id, &token(2, Some(i64::MAX / 2)), 2).await.unwrap().expect("issued");
        assert!(store.create_client_token(alice.id, &token(3, Some(i64::MAX / 2)), 2).await.unwrap().is_some());
        assert!(store.create_client_token(alice.id, &token(4, Some(i64::MAX / 2)), 2).await.unwrap().is_none(), "the limit");
        assert!(store.find_token(&[1; 32], now).await.unwrap().is_none(), "expired");
        let found = store.find_token(&[2; 32], now).await.unwrap().expect("live");
        assert_eq!((found.id, found.user.username.as_str()), (live, "alice"));
        assert!(store.refresh_token(live, i64::MAX / 4, now).await.unwrap());
        assert_eq!(store.find_token(&[2; 32], now).await.unwrap().unwrap().last_used, Some(now));
        store.set_active("alice", false).await.unwrap();
        assert!(!store.refresh_token(live, i64::MAX / 4, now).await.unwrap(), "never for an inactive user");
        let rows = store.list_tokens("alice").await.unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.client.as_deref() == Some("laptop") && !r.derived));
        assert!(store.delete_token(alice.id, live).await.unwrap());
        assert!(!store.delete_token(alice.id, live).await.unwrap());
    }

    sessions_live_until_they_expire_and_logout_names_their_owner(store) {
        let alice = store.create_user(&user("alice", "")).await.unwrap().unwrap();
        store.create_session(alice.id, &[7; 32], "csrf", 2_000).await.unwrap();
        let found = store.find_session(&[7; 32], 1_999).await.unwrap().expect("live");
        assert_eq!((found.user.id, found.csrf_secret.as_str(), found.expires), (alice.id, "csrf", 2_000));
        assert!(store.find_session(&[7; 32], 2_000).await.unwrap().is_none(), "expired");
        let before = store.last_change().await.unwrap();
        assert_eq!(store.delete_session(&[7; 32]).await.unwrap().as_deref(), Some("alice"));
        assert_eq!(store.delete_session(&[7; 32]).await.unwrap(), None);
        assert_eq!(store.changes_since(before).await.unwrap().users, vec!["alice".to_owned()]);
    }

    the_change_log_numbers_changes_in_order_and_flags_a_position_it_never_had(store) {
        for name in ["a", "b", "c"] {
            store.create_user(&user(name, "")).await.unwrap();
        }
        let start = store.last_change().await.unwrap();
        for name in ["a", "b", "c", "a"] {
            store.set_staff(name, true).await.unwrap();
        }
        let changes = store.changes_since(start).await.unwrap();
        assert_eq!(changes.users, ["a", "b", "c", "a"]);
        assert_eq!(changes.last, store.last_change().await.unwrap());
        assert!(changes.last >= start + 4);
        assert!(store.changes_since(changes.last).await.unwrap().users.is_empty());
        // A position past the log's end: not this log.
        assert!(store.changes_since(changes.last + 1000).await.unwrap().missed);
    }
}
