//! Scheme chains through the real loader and host services.
//!
//! - `chain/{dynamic,static}/N`: N-1 schemes not attempted, then one that authenticates,
//!   through the plugin libraries against the same scheme code linked statically;
//! - `length/N`: the same, dynamic, for N up to 64 (cost must grow linearly);
//! - `winner_at/K`: a chain of 8 whose K-th scheme wins (the rest are never called);
//! - `outcome/*`: one scheme answering each outcome: not attempted, authenticated, failed,
//!   fault;
//! - `token/{hit,miss}`: the token plugin with its key in the host's cache, and a key no
//!   token has (a store read each time: misses are not cached).
//!
//! The probe fixture stands for every scheme here because a binary can link only one plugin
//! crate statically (each exports the same root-module symbol). Run with `scripts/bench`,
//! which builds the plugin libraries in release mode first.

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use authhost::services::token_digest;
use authhost::store::{self, NewToken, NewUser};
use authhost::{App, Config, Schemes, Verdict};
use authhost_plugin_api::{Header, RequestView};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

struct Bench {
    dir: tempfile::TempDir,
    /// The probe fixture's folder.
    plugins: PathBuf,
    /// The shipped plugins' folder (`target/<profile>`).
    shipped: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    fn new() -> Bench {
        // The probe fixture, which scripts/bench builds into target/fixtures/<profile>.
        let exe = std::env::current_exe().expect("bench path");
        let profile_dir = exe.parent().and_then(|p| p.parent()).expect("target/<profile>");
        let profile = profile_dir.file_name().expect("profile");
        let plugins = profile_dir.parent().expect("target").join("fixtures").join(profile);
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            store::open(&format!("sqlite://{}/bench.db", dir.path().display()), store::CHANGE_LOG_KEEP)
                .expect("store");
        let mut conn = store.connect().expect("connection");
        let alice =
            NewUser { username: "alice", password_hash: None, is_active: true, is_staff: false, email: "" };
        conn.create_user(&alice).expect("create alice");
        conn.create_token("alice", &NewToken { digest: &token_digest(KEY), nonce: None }, false)
            .expect("token");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Bench { dir, plugins, shipped: profile_dir.to_owned(), runtime }
    }

    /// An app whose route `/b` has these schemes (TOML tables without the `[[scheme]]`
    /// header; names `s0`, `s1`, ...).
    fn app(&self, schemes: &[String], dynamic: bool) -> App {
        let mut text = format!(
            "[plugins]\ndir = {:?}\n[store]\nurl = \"sqlite://{}/bench.db\"\nuser_cache_ttl = \"1h\"\n",
            self.plugins.display().to_string(),
            self.dir.path().display()
        );
        let mut names = Vec::new();
        for (i, scheme) in schemes.iter().enumerate() {
            text += &format!("[[scheme]]\nname = \"s{i}\"\n{scheme}\n");
            names.push(format!("\"s{i}\""));
        }
        text +=
            &format!("[[route]]\npath = \"/b\"\nhandler = \"whoami\"\nschemes = [{}]\n", names.join(", "));
        let config = Config::parse(&self.dir.path().join("bench.toml"), &text).expect("config");
        let loaded = if dynamic {
            Schemes::load(&config).expect("plugins: run scripts/bench, which builds them")
        } else {
            Schemes::from_static(&config, &[("probe", authhost_probe::authhost_root_module())])
                .expect("static")
        };
        self.runtime.block_on(async { App::with_schemes(&config, &loaded) }).expect("app")
    }
}

fn skip() -> String {
    "plugin = \"probe\"\nmode = \"not_attempted\"".to_owned()
}

fn alice() -> String {
    "plugin = \"probe\"\nmode = \"user\"\nuser = \"alice\"".to_owned()
}

/// Polls a future that must finish without waiting (a cache hit never awaits).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the hot path awaited: the user is not in the cache"),
    }
}

fn request<'a>(headers: &'a [Header<'a>]) -> RequestView<'a> {
    RequestView::new("GET", "/b", "", headers, "127.0.0.1:40000".parse().expect("addr"))
}

/// Benches `/b` of `app` on `req`, from memory: warms the caches first.
fn bench_route(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    b: &Bench,
    app: &App,
    req: &RequestView<'_>,
    expect: fn(&Verdict) -> bool,
) {
    let chain = app.chain_for("/b").expect("route").clone();
    let warm = b.runtime.block_on(chain.authenticate(req, app.services()));
    assert!(expect(&warm), "{warm:?}");
    group.bench_function(id, |bencher| {
        bencher.iter(|| black_box(ready(chain.authenticate(black_box(req), app.services()))));
    });
}

/// What a bench's request must get.
type Expect = fn(&Verdict) -> bool;

fn authenticated(v: &Verdict) -> bool {
    matches!(v, Verdict::Authenticated { .. })
}

fn chains(c: &mut Criterion) {
    let b = Bench::new();
    let headers = [Header::new("x-username", b"alice"), Header::new("accept", b"*/*")];
    let req = request(&headers);

    let mut group = c.benchmark_group("chain");
    for n in [1, 3, 6] {
        let mut schemes = vec![skip(); n - 1];
        schemes.push(alice());
        for (label, dynamic) in [("dynamic", true), ("static", false)] {
            let app = b.app(&schemes, dynamic);
            bench_route(&mut group, BenchmarkId::new(label, n), &b, &app, &req, authenticated);
        }
    }
    group.finish();

    let mut group = c.benchmark_group("length");
    for n in [1, 2, 4, 8, 16, 32, 64] {
        let mut schemes = vec![skip(); n - 1];
        schemes.push(alice());
        let app = b.app(&schemes, true);
        bench_route(&mut group, BenchmarkId::from_parameter(n), &b, &app, &req, authenticated);
    }
    group.finish();

    let mut group = c.benchmark_group("winner_at");
    let gated: Vec<String> = (0..8).map(|i| format!("{}\nheader = \"x-win-{i}\"", alice())).collect();
    let app = b.app(&gated, true);
    for k in 0..8 {
        let name = format!("x-win-{k}");
        let headers = [Header::new(&name, b"1")];
        let req = request(&headers);
        bench_route(&mut group, BenchmarkId::from_parameter(k + 1), &b, &app, &req, authenticated);
    }
    group.finish();

    let mut group = c.benchmark_group("outcome");
    let cases: [(&str, String, Expect); 4] = [
        ("not_attempted", skip(), |v| matches!(v, Verdict::Anonymous)),
        ("authenticated", alice(), authenticated),
        ("failed", "plugin = \"probe\"\nmode = \"fail\"".to_owned(), |v| matches!(v, Verdict::Failed { .. })),
        ("fault", "plugin = \"probe\"\nmode = \"error\"".to_owned(), |v| matches!(v, Verdict::Fault)),
    ];
    for (label, scheme, expect) in cases {
        let app = b.app(&[scheme], true);
        bench_route(&mut group, BenchmarkId::from_parameter(label), &b, &app, &req, expect);
    }
    group.finish();

    let mut group = c.benchmark_group("token");
    let token = b.shipped.join(format!(
        "{}authhost_token{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let app = b.app(&[format!("path = {:?}", token.display().to_string())], true);
    let hit = format!("Token {KEY}");
    let headers = [Header::new("authorization", hit.as_bytes())];
    bench_route(&mut group, BenchmarkId::from_parameter("hit"), &b, &app, &request(&headers), authenticated);
    let chain = app.chain_for("/b").expect("route").clone();
    let miss = [Header::new("authorization", b"Token 0000000000000000000000000000000000000000")];
    let miss = request(&miss);
    group.bench_function("miss", |bencher| {
        bencher.iter(|| {
            let verdict = b.runtime.block_on(chain.authenticate(black_box(&miss), app.services()));
            assert!(matches!(verdict, Verdict::Failed { .. }));
            verdict
        });
    });
    group.finish();
}

criterion_group!(benches, chains);
criterion_main!(benches);
