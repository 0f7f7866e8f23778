//! Console sessions: who may open one, and every way one ends (sign-out, expiry, a revoked key).

use chrono::{Duration, Utc};
use payledger_app::api_keys::{self, Role};
use payledger_app::console_sessions::{self, SessionError};
use payledger_testdb::TestDatabase;

#[tokio::test]
async fn a_session_opens_for_operators_only_and_ends_by_sign_out_expiry_or_revocation() {
    let db = TestDatabase::fresh().await;
    let pool = &db.app_pool;
    let keys: Vec<String> = api_keys::seed_if_empty(
        pool,
        &[
            ("shop", Role::Client),
            ("alice", Role::Support),
            ("ops", Role::Admin),
        ],
        "system:tests",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|k| k.secret.expose().to_string())
    .collect();
    let now = Utc::now();

    assert!(matches!(
        console_sessions::sign_in(pool, &keys[0], 3600, now).await,
        Err(SessionError::RoleNotAllowed(Role::Client))
    ));
    assert!(matches!(
        console_sessions::sign_in(pool, "plk_nope", 3600, now).await,
        Err(SessionError::UnknownKey)
    ));

    let (token, session) = console_sessions::sign_in(pool, &keys[1], 3600, now)
        .await
        .unwrap();
    assert_eq!(session.principal.actor(), "support:alice");
    assert_eq!(session.csrf_token.len(), 64);
    let found = console_sessions::lookup(pool, token.expose(), now)
        .await
        .unwrap()
        .expect("a live session");
    assert_eq!(found.csrf_token, session.csrf_token);
    // Expired an hour later.
    assert!(
        console_sessions::lookup(pool, token.expose(), now + Duration::seconds(3601))
            .await
            .unwrap()
            .is_none()
    );
    // Ended by sign-out.
    console_sessions::sign_out(pool, token.expose(), now)
        .await
        .unwrap();
    assert!(console_sessions::lookup(pool, token.expose(), now)
        .await
        .unwrap()
        .is_none());

    // Ended by revoking the key it was opened with.
    let (admin_token, _) = console_sessions::sign_in(pool, &keys[2], 3600, now)
        .await
        .unwrap();
    let store =
        payledger_store::EventStore::new(pool.clone(), payledger_store::WriterConfig::default());
    api_keys::revoke(
        pool,
        &store,
        "ops",
        &payledger_app::context::RequestContext::system("tests"),
    )
    .await
    .unwrap();
    assert!(console_sessions::lookup(pool, admin_token.expose(), now)
        .await
        .unwrap()
        .is_none());

    // Ended sessions are purged a day later, not before.
    assert_eq!(console_sessions::purge(pool, now).await.unwrap(), 0);
    assert_eq!(
        console_sessions::purge(pool, now + Duration::days(2))
            .await
            .unwrap(),
        2
    );
}
