//! TLS for the listening port (`[server] tls_cert_file`, `tls_key_file`), by rustls with
//! the ring provider: the certificate chain and key are read when the app is built, so a
//! reload (SIGHUP, `authhost reload`) serves a certificate replaced on disk to every new
//! connection, and a bad one refuses start-up or the reload, naming the file. ALPN offers
//! HTTP/2 first, then HTTP/1.1. And TLS towards `https://` upstreams (proxy routes).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tracing::warn;

use crate::error::Error;

/// The server's TLS settings from a PEM certificate chain (leaf first) and its PEM private
/// key (PKCS#8, PKCS#1 or SEC1). `config` names the config file in messages.
pub fn server_config(cert_file: &Path, key_file: &Path, config: &Path) -> Result<Arc<ServerConfig>, Error> {
    let bad = |file: &Path, key: &str, why: String| {
        Error::config(format!("{}: server.{key}: {}: {why}", config.display(), file.display()))
    };
    let (chain, key) = read_identity(cert_file, key_file, "the server's", |is_key, why| {
        if is_key {
            bad(key_file, "tls_key_file", why)
        } else {
            bad(cert_file, "tls_cert_file", why)
        }
    })?;
    let mut server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("{}: TLS: {e}", config.display())))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(
                key_file,
                "tls_key_file",
                format!("not usable with the certificate in {}: {e}", cert_file.display()),
            )
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The TLS settings for an `https://` upstream: rustls with the ring provider, HTTP/1.1 by
/// ALPN, the upstream's certificate checked against `ca_file`'s certificates (PEM) when the
/// route names one, else against the system's roots; with `identity` (a PEM certificate
/// chain and its key), authhost shows the upstream a client certificate (mutual TLS).
/// `route` names the route in messages (`route[0] ("/app")`).
pub fn upstream_client_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    config: &Path,
    route: &str,
) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let bad = |why: String| {
                Error::config(format!(
                    "{}: {route}.upstream_ca_file: {}: {why}",
                    config.display(),
                    file.display()
                ))
            };
            let certs =
                pem_certificates(file).map_err(|e| bad(format!("cannot read PEM certificates ({e})")))?;
            if certs.is_empty() {
                return Err(bad(
                    "no certificate in it: give the PEM certificates of the CAs to trust".to_owned()
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(format!("not a CA certificate rustls can use: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(Error::config(format!(
                    "{}: {route}.upstream: this system has no trusted CA certificates to check the upstream with{why}; \
                     install ca-certificates or set upstream_ca_file",
                    config.display()
                )));
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("{}: TLS: {e}", config.display())))?
        .with_root_certificates(roots);
    let mut client = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let bad = |file: &Path, name: &str, why: String| {
                Error::config(format!("{}: {route}.{name}: {}: {why}", config.display(), file.display()))
            };
            let (chain, private) = read_identity(cert_file, key_file, "authhost's", |is_key, why| {
                if is_key {
                    bad(key_file, "upstream_client_key_file", why)
                } else {
                    bad(cert_file, "upstream_client_cert_file", why)
                }
            })?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                bad(
                    key_file,
                    "upstream_client_key_file",
                    format!("not usable with the certificate in {}: {e}", cert_file.display()),
                )
            })?
        }
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(client))
}

/// A certificate chain (leaf first, `whose` in messages) and its private key (PKCS#8,
/// PKCS#1 or SEC1), from PEM files; `bad` makes the error, told whether the key file is at
/// fault. A key others can read is warned about.
fn read_identity(
    cert_file: &Path,
    key_file: &Path,
    whose: &str,
    bad: impl Fn(bool, String) -> Error,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let chain = pem_certificates(cert_file)
        .map_err(|e| bad(false, format!("cannot read a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(bad(
            false,
            format!("no certificate in it: give the PEM chain, {whose} certificate first"),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| bad(true, format!("cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")))?;
    warn_if_readable_by_others(key_file);
    Ok((chain, key))
}

/// Every certificate in a PEM file, in order.
fn pem_certificates(
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, tokio_rustls::rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(file)?.collect()
}

/// A private key others can read is a leak waiting to happen: say so (it still loads, as
/// distributions' `ssl-cert` group layouts are legitimate).
fn warn_if_readable_by_others(key_file: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(key_file) {
        if meta.permissions().mode() & 0o004 != 0 {
            warn!(file = %key_file.display(), "the TLS private key is readable by every user; chmod 0600 it");
        }
    }
}
