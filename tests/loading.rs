//! Bad configs and bad plugins fail at start-up, naming the file and the key.

use crate::support::{plugin_path, Site};

/// Runs `check` and `serve` on a config and returns their stderr, asserting both fail.
fn refused(site: &Site) -> String {
    let check = site.authhost(&["check"], "");
    assert!(!check.status.success(), "check accepted a bad config");
    let serve = site.authhost(&["serve", "--listen", "127.0.0.1:0"], "");
    assert!(!serve.status.success(), "serve accepted a bad config");
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    let serve_err = String::from_utf8_lossy(&serve.stderr).into_owned();
    assert_eq!(check_err, serve_err, "check and serve report the same problem");
    assert!(check_err.lines().count() < 20, "a short message, not abi_stable's report:\n{check_err}");
    check_err
}

const ROUTE: &str = "[[route]]\npath = \"/me\"\nhandler = \"whoami\"\n";

#[test]
fn abi_mismatched_library_is_refused_in_a_few_lines_naming_the_file() {
    let lib = plugin_path("wrong_abi");
    let site =
        Site::new(&format!("[[scheme]]\nname = \"old\"\npath = {:?}\n{ROUTE}", lib.display().to_string()));
    let err = refused(&site);
    assert!(err.contains(&lib.display().to_string()), "{err}");
    assert!(err.contains("scheme[0] (\"old\")"), "{err}");
    assert!(err.contains("built against a different plugin ABI; rebuild it"), "{err}");
    assert!(err.contains("error: "), "the Error: lines of the report: {err}");
}

#[test]
fn a_library_that_is_no_plugin_is_refused() {
    let lib = plugin_path("not_a_plugin");
    let site =
        Site::new(&format!("[[scheme]]\nname = \"np\"\npath = {:?}\n{ROUTE}", lib.display().to_string()));
    let err = refused(&site);
    assert!(err.contains(&lib.display().to_string()), "{err}");
    assert!(err.contains("not an authhost plugin"), "{err}");
}

#[test]
fn missing_plugin_file_is_named() {
    let site = Site::new(&format!("[[scheme]]\nname = \"gone\"\nplugin = \"nonesuch\"\n{ROUTE}"));
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"gone\")"), "{err}");
    assert!(err.contains("libauthhost_nonesuch"), "{err}");
    assert!(err.contains("no such file"), "{err}");
    // What the plugins directory does hold, so that the fix can be read off the message.
    assert!(err.contains("holds the plugins basic, jwt, not-a-plugin, probe, remote-user, session, token, wrong-abi, x-username"), "{err}");
}

#[test]
fn a_misspelt_plugin_gets_the_closest_one_the_directory_holds() {
    let site = Site::new(&format!("[[scheme]]\nname = \"t\"\nplugin = \"tokn\"\n{ROUTE}"));
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"t\")"), "{err}");
    assert!(err.contains("libauthhost_tokn"), "{err}");
    assert!(err.contains("(did you mean plugin = \"token\"?)"), "{err}");
}

#[test]
fn unknown_top_level_key_is_named() {
    let site = Site::new("[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n");
    let err = refused(&site);
    assert!(err.contains(&site.config_path().display().to_string()), "{err}");
    assert!(err.contains("unknown field `lisen`"), "{err}");
}

#[test]
fn unknown_scheme_in_a_route_is_named() {
    let site = Site::new(&format!(
        "[[scheme]]\nname = \"token\"\nplugin = \"x-username\"\n{ROUTE}schemes = [\"tokn\"]\n"
    ));
    let err = refused(&site);
    assert!(
        err.contains("route[0] (\"/me\").schemes[0]: unknown scheme \"tokn\" (did you mean \"token\"?)"),
        "{err}"
    );
}

#[test]
fn unknown_handler_is_named() {
    let site = Site::new("[[route]]\npath = \"/x\"\nhandler = \"whomai\"\n");
    let err = refused(&site);
    assert!(
        err.contains("route[0] (\"/x\").handler: unknown handler \"whomai\" (did you mean \"whoami\"?)"),
        "{err}"
    );
}

#[test]
fn duplicate_scheme_name_is_named() {
    let site = Site::new(
        "[[scheme]]\nname = \"a\"\nplugin = \"x-username\"\n[[scheme]]\nname = \"a\"\nplugin = \"probe\"\n",
    );
    let err = refused(&site);
    assert!(err.contains("scheme[1].name: duplicate scheme name \"a\""), "{err}");
}

#[test]
fn unknown_scheme_option_is_named_with_a_suggestion() {
    let site = Site::new("[[scheme]]\nname = \"who\"\nplugin = \"x-username\"\nheadr = \"X-User\"\n");
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"who\").headr: unknown option (did you mean \"header\"?)"), "{err}");
}

#[test]
fn scheme_option_of_the_wrong_type_is_named() {
    let site = Site::new("[[scheme]]\nname = \"p\"\nplugin = \"probe\"\nchallenge = 3\n");
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"p\").challenge: expected a string, found an integer"), "{err}");
}

#[test]
fn constructor_errors_and_panics_are_reported_not_fatal_crashes() {
    let site = Site::new("[[scheme]]\nname = \"p\"\nplugin = \"probe\"\nmode = \"error_on_start\"\nmessage = \"no key file\"\n");
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"p\"): no key file"), "{err}");

    site.write_config(
        "[[scheme]]\nname = \"p\"\nplugin = \"probe\"\nmode = \"panic_on_start\"\nmessage = \"ctor boom\"\n",
    );
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"p\"): panicked while starting: ctor boom"), "{err}");

    // A token policy that panics is a fault at load, never "no policy".
    site.write_config(
        "[[scheme]]\nname = \"p\"\nplugin = \"probe\"\nmode = \"policy_panic\"\nmessage = \"policy boom\"\n",
    );
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"p\"): "), "{err}");
    assert!(err.contains("panicked in token_policy: policy boom"), "{err}");
}

#[test]
fn check_prints_each_routes_chain() {
    let site = Site::new(
        "[[scheme]]\nname = \"who\"\nplugin = \"x-username\"\n[[scheme]]\nname = \"p\"\nplugin = \"probe\"\n\
         [[route]]\npath = \"/me\"\nhandler = \"whoami\"\nschemes = [\"p\", \"who\"]\npermission = \"is_admin\"\n",
    );
    let out = site.authhost(&["check"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let route = stdout.lines().find(|l| l.trim_start().starts_with("/me")).expect("route line");
    assert!(route.contains("is_admin") && route.ends_with("p -> who"), "{stdout}");
}

#[test]
fn the_shipped_config_loads_every_plugin() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authhost.toml");
    let site = Site::new("");
    let out = std::process::Command::new(crate::support::build_dir().join("authhost"))
        .args(["check", "--config"])
        .arg(&shipped)
        .current_dir(site.path())
        .env_remove("AUTHHOST_TOKEN_SECRET")
        .output()
        .expect("run authhost check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, String::from_utf8_lossy(&out.stderr));
    for scheme in ["session", "basic", "token", "bearer", "remote-user", "x-username"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(&format!("{scheme} "))),
            "{scheme}:\n{stdout}"
        );
    }
    assert!(stdout.contains("session -> basic -> token"), "{stdout}");
    // Issue 12, item 8: no shipped route believes a client's X-USERNAME.
    let routes = stdout.split("routes:").nth(1).expect("the routes");
    assert!(!routes.contains("x-username"), "a shipped route hands out impersonation:\n{routes}");
}

#[test]
fn plugin_info_shows_name_version_loadability_and_declared_options() {
    let run = |file: &std::path::Path| {
        let out = std::process::Command::new(crate::support::build_dir().join("authhost"))
            .args(["plugin", "info"])
            .arg(file)
            .output()
            .expect("authhost plugin info");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = run(&plugin_path("basic"));
    assert!(ok, "{text}");
    assert!(text.contains("plugin:      authhost-basic"), "{text}");
    assert!(
        text.contains(&format!("plugin-api:  {v} (this host: {v})", v = authhost_plugin_api::VERSION)),
        "{text}"
    );
    assert!(text.contains("loadable:    yes"), "{text}");
    let row = text.lines().find(|l| l.trim_start().starts_with("cache_ttl")).unwrap_or_default();
    assert!(row.contains("duration") && row.contains("\"0s\"") && row.contains("skips argon2"), "{text}");

    let (ok, text) = run(&plugin_path("wrong_abi"));
    assert!(!ok);
    assert!(text.contains("loadable:    no: built against a different plugin ABI"), "{text}");
    let (ok, text) = run(&plugin_path("probe"));
    assert!(ok && text.contains("none declared"), "{text}");
}

#[test]
fn a_declared_option_of_the_wrong_kind_is_refused_before_the_constructor_runs() {
    let site = Site::new("[[scheme]]\nname = \"b\"\nplugin = \"basic\"\ncache_ttl = true\n");
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"b\").cache_ttl: expected a duration, found a boolean"), "{err}");
    site.write_config("[[scheme]]\nname = \"b\"\nplugin = \"basic\"\nrelam = \"x\"\n");
    let err = refused(&site);
    assert!(err.contains("scheme[0] (\"b\").relam: unknown option (did you mean \"realm\"?)"), "{err}");
}

/// Issue 12, item 2: every numeric option is bounded at load, naming the key, instead of
/// being accepted and then panicking a request (an overflowing deadline, say).
#[test]
fn every_numeric_option_is_bounded_at_load_naming_the_key() {
    // 2^63 - 1 seconds: accepted once, then every request panicked on its deadline.
    const HUGE: &str = "9223372036854775807";
    let cases: [(&str, &'static str, &str); 10] = [
        ("[server]\nshutdown_timeout = HUGE\n", "", "server.shutdown_timeout"),
        ("", "change_poll = 9223372036854775807", "store.change_poll"),
        ("", "change_log_keep = 9223372036854775807", "store.change_log_keep"),
        ("", "token_refresh_every = 9223372036854775807", "store.token_refresh_every"),
        ("", "user_cache_ttl = 9223372036854775807", "store.user_cache_ttl"),
        ("[session]\nttl = HUGE\n", "", "session.ttl"),
        (
            "[[route]]\npath = \"/p\"\nupstream = \"http://127.0.0.1:9\"\ntimeout = HUGE\n",
            "",
            "route[0] (\"/p\").timeout",
        ),
        (
            "[[route]]\npath = \"/p\"\nupstream = \"http://127.0.0.1:9\"\nconnect_timeout = HUGE\n",
            "",
            "route[0] (\"/p\").connect_timeout",
        ),
        ("[[scheme]]\nname = \"basic\"\nplugin = \"basic\"\ncache_ttl = HUGE\n", "", "cache_ttl"),
        ("[[scheme]]\nname = \"token\"\nplugin = \"token\"\nttl = \"106751991167300d\"\n", "", "ttl"),
    ];
    for (config, store, key) in cases {
        let site = Site::with_cache(&config.replace("HUGE", HUGE), store);
        let err = refused(&site);
        assert!(err.contains(key) && err.contains("too long"), "{key}: {err}");
    }
}

/// Each build of a plugin that a host loads leaves a private copy (a few MiB) in
/// `$TMPDIR/authhost-UID/plugins`. One that no host has loaded for an hour is removed when a
/// host next loads its plugins (so is a partial write a crash left); one loaded again
/// counts as used now, and a recent one stays.
#[test]
fn private_copies_unused_for_an_hour_are_removed_at_the_next_load() {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, SystemTime};
    let tmp = tempfile::tempdir().unwrap();
    let uid = std::fs::metadata(tmp.path()).unwrap().uid();
    let copies = tmp.path().join(format!("authhost-{uid}")).join("plugins");
    let site = Site::new(&format!("[[scheme]]\nname = \"token\"\nplugin = \"token\"\n{ROUTE}"));
    let env = [("TMPDIR", tmp.path().to_str().unwrap())];
    drop(site.serve_env(&env));
    let listed = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&copies)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let first = listed();
    assert_eq!(first.len(), 1, "one copy, the token plugin's: {first:?}");
    let token_copy = copies.join(&first[0]);
    let aged = |name: &str, age: Duration| {
        let path = copies.join(name);
        if !path.exists() {
            std::fs::write(&path, b"an old build").unwrap();
        }
        std::fs::File::open(&path).unwrap().set_modified(SystemTime::now() - age).unwrap();
    };
    let hours = |n: u64| Duration::from_secs(n * 3600);
    aged(&first[0], hours(2));
    let stale = format!("{}.so", "a".repeat(64));
    let recent = format!("{}.so", "b".repeat(64));
    let partial = format!("{}.partial-1", "c".repeat(64));
    aged(&stale, hours(2));
    aged(&partial, hours(2));
    aged(&recent, Duration::from_secs(300));

    drop(site.serve_env(&env));
    let mut expected = vec![first[0].clone(), recent];
    expected.sort();
    assert_eq!(listed(), expected, "the stale copy and the partial write are gone");
    let touched = std::fs::metadata(&token_copy).unwrap().modified().unwrap();
    assert!(touched.elapsed().unwrap() < Duration::from_secs(60), "the reused copy counts as used now");
}
