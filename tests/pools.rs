//! The store and password pools survive their jobs: a store job that panics fails alone,
//! the next requests are served and `health` stays ok. The host runs in-process here (the
//! real config, loader, plugins, store and server on a real socket), so that the test can
//! hand the store pool a job that panics: no request can make the host's own store code
//! panic. Dead and stuck pools turning `health` into 503 are shown in `host/src/pool.rs`.
//! See: issue 11.

use std::sync::Arc;
use std::time::Duration;

use authhost::{App, AppSlot, Config};
use serde_json::json;

use crate::support::{Req, Site};

const CONFIG: &str = r#"
[[scheme]]
name = "x-username"
plugin = "x-username"

[[route]]
path = "/me"
handler = "whoami"
schemes = ["x-username"]
permission = "is_authenticated"

[[route]]
path = "/health"
handler = "health"
schemes = []
permission = "allow_any"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_store_job_fails_alone_and_health_stays_ok() {
    // Caches off: every request below goes through the store pool.
    let site = Site::with_cache(CONFIG, "user_cache_ttl = 0");
    site.add_user("alice", "alice-pw", &[]);
    let config = Config::load(&site.config_path()).expect("config");
    let slot = Arc::new(AppSlot::new(App::build(&config).expect("app")));
    let app = slot.get();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authhost::serve(
        listener,
        slot,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    let err = app
        .services()
        .store_pool()
        .run(|_| -> Result<(), authhost::Error> { panic!("injected into the store pool") })
        .await
        .expect_err("the job's caller gets the panic as an error");
    assert!(!err.is_busy());
    assert!(
        err.with_cause().contains("a store job panicked: injected into the store pool"),
        "{}",
        err.with_cause()
    );

    // Both store threads still serve: more requests than threads, each read from the store.
    for _ in 0..6 {
        let resp = Req::to(addr, "GET", "/me").header("x-username", "alice").send().await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.json()["user"], json!("alice"));
    }
    let resp = Req::to(addr, "GET", "/health").send().await;
    assert_eq!((resp.status, resp.json()), (200, json!({"status": "ok"})));
    let _ = stop.send(());
    server.await.unwrap();
}
