//! A chain of N schemes through the dynamic boundary (the real plugin libraries, loaded by
//! the real loader) against the same scheme code linked statically into this binary.
//!
//! Each chain is N-1 schemes that are not attempted, then one that authenticates alice
//! through the host's `find_user`, answered from the in-memory user cache: the hot path,
//! with no store I/O. All are the probe fixture's schemes, because a binary can link only
//! one plugin crate statically (each exports the same root-module symbol). Run it with
//! `scripts/bench` (it builds the plugin libraries in release mode first).

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use authhost::store::{self, NewUser};
use authhost::{App, Config, Schemes, Verdict};
use authhost_plugin_api::{Header, RequestView};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn config_text(dir: &std::path::Path, plugins: &std::path::Path, schemes: usize) -> String {
    let mut text = format!(
        "[plugins]\ndir = {:?}\n[store]\nurl = \"sqlite://{}/bench.db\"\nuser_cache_ttl = \"1h\"\n",
        plugins.display().to_string(),
        dir.display()
    );
    let mut names = Vec::new();
    for i in 0..schemes - 1 {
        text += &format!("[[scheme]]\nname = \"skip{i}\"\nplugin = \"probe\"\nmode = \"not_attempted\"\n");
        names.push(format!("\"skip{i}\""));
    }
    text += "[[scheme]]\nname = \"who\"\nplugin = \"probe\"\nmode = \"user\"\nuser = \"alice\"\n";
    names.push("\"who\"".into());
    text += &format!("[[route]]\npath = \"/b\"\nhandler = \"whoami\"\nschemes = [{}]\n", names.join(", "));
    text
}

/// Polls a future that must finish without waiting (a cache hit never awaits).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the hot path awaited: the user is not in the cache"),
    }
}

fn build(dir: &std::path::Path, plugins: &std::path::Path, schemes: usize, dynamic: bool) -> App {
    let config = Config::parse(&dir.join("bench.toml"), &config_text(dir, plugins, schemes)).expect("config");
    let loaded = if dynamic {
        Schemes::load(&config).expect("plugins: run scripts/bench, which builds them")
    } else {
        Schemes::from_static(&config, &[("probe", authhost_probe::authhost_root_module())])
            .expect("static modules")
    };
    App::with_schemes(&config, &loaded).expect("app")
}

fn bench_chains(c: &mut Criterion) {
    let exe = std::env::current_exe().expect("bench path");
    let plugins: PathBuf = exe.parent().and_then(|p| p.parent()).expect("target/<profile>").to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = store::open(&format!("sqlite://{}/bench.db", dir.path().display())).expect("store");
        let mut conn = store.connect().expect("connection");
        let alice = NewUser { username: "alice", password_hash: None, is_active: true, is_staff: false };
        conn.create_user(&alice).expect("create alice");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let headers = [Header::new("x-username", b"alice"), Header::new("accept", b"*/*")];
    let request = RequestView::new("GET", "/b", "", &headers, "127.0.0.1:40000".parse().expect("addr"));

    let mut group = c.benchmark_group("chain");
    for schemes in [1, 3, 6] {
        for (label, dynamic) in [("dynamic", true), ("static", false)] {
            let app = build(dir.path(), &plugins, schemes, dynamic);
            let chain = app.chain_for("/b").expect("route").clone();
            // The first call misses the cache and reads the store; warm it.
            let warm = runtime.block_on(chain.authenticate(&request, app.services()));
            assert!(matches!(warm, Verdict::Authenticated { .. }), "{warm:?}");
            group.bench_with_input(BenchmarkId::new(label, schemes), &schemes, |b, _| {
                b.iter(|| {
                    let verdict = ready(chain.authenticate(black_box(&request), app.services()));
                    black_box(verdict)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_chains);
criterion_main!(benches);
