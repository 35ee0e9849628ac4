//! Basic authentication's cost: an unknown user must cost what a wrong password costs
//! (both pay one argon2 verify: timing must not reveal which names exist), and the
//! verified-credential cache must spare argon2 on repeat requests.
//!
//! Run with `scripts/bench` (it builds the plugin libraries in release mode first).

use std::path::{Path, PathBuf};
use std::time::Duration;

use authhost::pool::hash_password;
use authhost::store::{self, NewUser};
use authhost::{App, Config, Schemes, Verdict};
use authhost_plugin_api::{Header, LoginField, RequestView};
use criterion::{criterion_group, criterion_main, Criterion};

fn setup(dir: &Path) -> (App, tokio::runtime::Runtime) {
    let exe = std::env::current_exe().expect("bench path");
    let plugins: PathBuf = exe.parent().and_then(|p| p.parent()).expect("target/<profile>").to_owned();
    let db = format!("sqlite://{}/bench.db", dir.display());
    {
        let store = store::open(&db, authhost::store::CHANGE_LOG_KEEP).expect("store");
        let mut conn = store.connect().expect("connection");
        let hash = hash_password("right password");
        let alice = NewUser {
            username: "alice",
            password_hash: Some(&hash),
            is_active: true,
            is_staff: false,
            email: "",
        };
        conn.create_user(&alice).expect("create alice");
    }
    let text = format!(
        "[plugins]\ndir = {:?}\n[store]\nurl = \"{db}\"\nuser_cache_ttl = \"1h\"\n\
         [[scheme]]\nname = \"cached\"\nplugin = \"basic\"\ncache_ttl = \"1h\"\n\
         [[scheme]]\nname = \"uncached\"\nplugin = \"basic\"\n\
         [[route]]\npath = \"/cached\"\nhandler = \"whoami\"\nschemes = [\"cached\"]\n\
         [[route]]\npath = \"/uncached\"\nhandler = \"whoami\"\nschemes = [\"uncached\"]\n",
        plugins.display().to_string()
    );
    let config = Config::parse(&dir.join("bench.toml"), &text).expect("config");
    let schemes = Schemes::load(&config).expect("plugins: run scripts/bench, which builds them");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let app = runtime.block_on(async { App::with_schemes(&config, &schemes) }).expect("app");
    (app, runtime)
}

fn bench_passwords(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, runtime) = setup(dir.path());
    let services = app.services();

    let mut group = c.benchmark_group("basic_verify");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group.bench_function("unknown_user", |b| {
        b.iter(|| {
            runtime.block_on(services.verify_login(
                LoginField::Username,
                "nobody".into(),
                "right password".into(),
                std::net::Ipv4Addr::LOCALHOST.into(),
            ))
        })
    });
    group.bench_function("wrong_password", |b| {
        b.iter(|| {
            runtime.block_on(services.verify_login(
                LoginField::Username,
                "alice".into(),
                "wrong password".into(),
                std::net::Ipv4Addr::LOCALHOST.into(),
            ))
        })
    });
    group.finish();

    // "alice:right password"
    let headers = [Header::new("authorization", b"Basic YWxpY2U6cmlnaHQgcGFzc3dvcmQ=")];
    let mut group = c.benchmark_group("basic_chain");
    for (label, path) in [("uncached", "/uncached"), ("cached", "/cached")] {
        let request = RequestView::new("GET", path, "", &headers, "127.0.0.1:40000".parse().expect("addr"));
        let chain = app.chain_for(path).expect("route").clone();
        let warm = runtime.block_on(chain.authenticate(&request, services));
        assert!(matches!(warm, Verdict::Authenticated { .. }), "{warm:?}");
        if label == "uncached" {
            group.sample_size(30).measurement_time(Duration::from_secs(8));
        } else {
            group.sample_size(100).measurement_time(Duration::from_secs(5));
        }
        group.bench_function(label, |b| b.iter(|| runtime.block_on(chain.authenticate(&request, services))));
    }
    group.finish();
}

criterion_group!(benches, bench_passwords);
criterion_main!(benches);
