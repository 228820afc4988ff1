//! Enrolment on the municipality's machine: `varde-collector enrol <token>`.
//!
//! The collector makes its Ed25519 key pair here (the private key never leaves the machine),
//! sends the public key and a proof that it holds the private one to the CERT's enrolment API
//! over HTTPS, trusting exactly the certificate whose SHA-256 the token pins (no CA), receives
//! its collector id, tenant and Kafka settings, and writes its key (mode 0600), its privacy key
//! (made here too, never sent) and a working configuration.
//!
//! Nothing is written before the CERT has accepted the enrolment, and nothing is sent when the
//! token is damaged, has expired by its own date, or the machine has a key already: a used,
//! expired or tampered token gets a clear error and changes nothing. `rotate_key` adds a new key
//! the same way, signed with the current one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;
use varde_core::CollectorKey;
use varde_core::enrolment::{
    ApiError, ENROL_PATH, EnrolRequest, EnrolResponse, EnrolmentToken, ROTATE_PATH, RotateRequest,
    RotateResponse, fingerprint, proof_message, rotate_message,
};
use varde_core::identity::hex_encode;

use crate::config::CollectorConfig;
use crate::identity::{create_private, load_key};

/// Why enrolment (or a rotation) did not happen. Nothing was written on this machine.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The token text is not a usable token.
    #[error("{0}")]
    Token(#[from] varde_core::enrolment::TokenError),
    /// The token's own expiry has passed.
    #[error("the token expired at {0}: ask the CERT for a new one")]
    Expired(String),
    /// The machine has a collector key already.
    #[error(
        "a collector key exists at {0}: this machine is enrolled already (to replace the key, use `varde-collector rotate-key`; to start over, move the key and the state directory away)"
    )]
    AlreadyEnrolled(PathBuf),
    /// The CERT could not be reached, or presented another certificate.
    #[error("the CERT's enrolment service at {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CERT refused.
    #[error("the CERT refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The CERT's words.
        message: String,
    },
    /// The answer was not what the API gives.
    #[error("the CERT's answer is not readable: {0}")]
    Answer(String),
    /// Writing the key, privacy key or configuration failed (after the CERT accepted).
    #[error("{0}")]
    Write(String),
}

/// Where enrolment writes.
#[derive(Debug, Clone)]
pub struct EnrolPaths {
    /// The configuration file to write (an existing one is kept beside it as
    /// `<name>.before-enrol`).
    pub config: PathBuf,
    /// The state directory (key, privacy key, spool, sequence).
    pub state_dir: PathBuf,
}

/// What enrolment did.
#[derive(Debug)]
pub struct Enrolled {
    /// The CERT's answer.
    pub response: EnrolResponse,
    /// The key's file.
    pub key_file: PathBuf,
    /// The key id.
    pub key_id: String,
    /// The configuration written.
    pub config: PathBuf,
}

/// A collector's side of an enrolment before anything is sent: the token read and checked
/// against its own expiry, the key made (in memory), the request with its proof.
pub struct Prepared {
    /// The token.
    pub token: EnrolmentToken,
    /// The new key.
    pub key: CollectorKey,
    /// Its PEM file text, to write once the CERT accepted.
    pub pem: String,
    /// The request to send.
    pub request: EnrolRequest,
}

/// Reads `token_text` and makes the key and the request (no I/O): what [`enrol`] sends, and
/// what `varde demo` hands to the CERT's side in-process.
pub fn prepare(token_text: &str, hostname: &str, now_us: i64) -> Result<Prepared, EnrolError> {
    let token = EnrolmentToken::parse(token_text)?;
    if token.expires_us <= now_us {
        return Err(EnrolError::Expired(varde_core::time::format_rfc3339(
            token.expires_us,
        )));
    }
    let (key, pem) = CollectorKey::generate().map_err(|e| EnrolError::Write(e.to_string()))?;
    let public = key.public_key();
    let request = EnrolRequest {
        token: token_text.trim().to_owned(),
        public_key: public.to_string(),
        proof: hex_encode(&key.sign(&proof_message(&token.id, &public))),
        hostname: hostname.to_owned(),
    };
    Ok(Prepared {
        token,
        key,
        pem,
        request,
    })
}

/// Enrols this machine with `token_text`; see the module documentation.
pub async fn enrol(
    token_text: &str,
    paths: &EnrolPaths,
    hostname: &str,
    now_us: i64,
) -> Result<Enrolled, EnrolError> {
    let key_file = paths.state_dir.join("collector.key");
    if key_file.exists() {
        return Err(EnrolError::AlreadyEnrolled(key_file));
    }
    let Prepared {
        token,
        key,
        pem,
        request,
    } = prepare(token_text, hostname, now_us)?;
    let response: EnrolResponse = post_json(&token.url, &token.pin, ENROL_PATH, &request).await?;
    if response.tenant != token.tenant {
        return Err(EnrolError::Answer(format!(
            "the CERT enrolled this collector for {}, the token says {}",
            response.tenant, token.tenant
        )));
    }
    // Accepted: now, and only now, the machine changes.
    create_private(&key_file, pem.as_bytes())
        .map_err(|e| EnrolError::Write(format!("{}: {e}", key_file.display())))?;
    let privacy_key = paths.state_dir.join("privacy.key");
    crate::privacy::PrivacyKey::load_or_create(&privacy_key)
        .map_err(|e| EnrolError::Write(e.to_string()))?;
    write_config(&paths.config, &config_text(&response, &paths.state_dir))?;
    Ok(Enrolled {
        key_id: key.key_id().to_string(),
        response,
        key_file,
        config: paths.config.clone(),
    })
}

/// Adds a new key for the collector of `config`: the CERT accepts it signed with the current
/// key, which stays valid for the CERT's overlap. The new key is written beside the old one
/// (`collector.key.new`) until the CERT has accepted it, then takes its place; the old one is
/// kept as `collector.key.old` until the overlap ends.
pub async fn rotate_key(
    config: &CollectorConfig,
    url: &str,
    pin: &str,
) -> Result<RotateResponse, EnrolError> {
    let key_file = config.identity.key_path(&config.state_dir);
    let current = load_key(&key_file).map_err(|e| EnrolError::Write(e.to_string()))?;
    let (new, pem) = CollectorKey::generate().map_err(|e| EnrolError::Write(e.to_string()))?;
    let message = rotate_message(&config.collector_id, &new.public_key());
    let request = RotateRequest {
        collector_id: config.collector_id.clone(),
        key_id: current.key_id().to_string(),
        new_public_key: new.public_key().to_string(),
        signature: hex_encode(&current.sign(&message)),
        new_key_proof: hex_encode(&new.sign(&message)),
    };
    let response: RotateResponse = post_json(url, pin, ROTATE_PATH, &request).await?;
    let with_suffix = |s: &str| {
        let mut p = key_file.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    let (new_file, old_file) = (with_suffix(".new"), with_suffix(".old"));
    let _ = std::fs::remove_file(&new_file);
    create_private(&new_file, pem.as_bytes())
        .map_err(|e| EnrolError::Write(format!("{}: {e}", new_file.display())))?;
    let _ = std::fs::remove_file(&old_file);
    std::fs::hard_link(&key_file, &old_file)
        .and_then(|()| std::fs::rename(&new_file, &key_file))
        .map_err(|e| EnrolError::Write(format!("{}: {e}", key_file.display())))?;
    Ok(response)
}

/// The configuration an enrolled collector starts with: the CERT's settings, syslog over UDP
/// and TCP on port 5514, the machine's own syslog file, the spool and metrics defaults.
pub fn config_text(r: &EnrolResponse, state_dir: &Path) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut properties = String::new();
    for (k, v) in &r.kafka_properties {
        properties.push_str(&format!("{} = {}\n", quote(k), quote(v)));
    }
    format!(
        "# Written by `varde-collector enrol` for {name} ({tenant} {municipality}).\n\
         # Check it with: varde-collector check-config <this file>\n\
         # Every key is explained in docs/collector.md.\n\n\
         collector_id = {id}\n\
         tenant = {tenant_q}\n\
         state_dir = {state}\n\n\
         [identity]\n\
         key_file = {key}\n\n\
         [kafka]\n\
         brokers = {brokers}\n\
         topic_prefix = {prefix}\n\
         [kafka.properties]\n\
         {properties}\n\
         [privacy]\n\
         key_file = {privacy}\n\n\
         [spool]\n\
         fsync = \"batch\"\n\
         when_full = \"block\"\n\n\
         [metrics]\n\
         listen = \"127.0.0.1:9464\"\n\n\
         [[sources]]\n\
         type = \"syslog_udp\"\n\
         listen = \"0.0.0.0:5514\"\n\n\
         [[sources]]\n\
         type = \"syslog_tcp\"\n\
         listen = \"0.0.0.0:5514\"\n",
        name = r.name.replace('\n', " "),
        tenant = r.tenant,
        municipality = r.tenant.name(),
        id = quote(r.collector_id.as_str()),
        tenant_q = quote(r.tenant.as_str()),
        state = quote(&state_dir.display().to_string()),
        key = quote(&state_dir.join("collector.key").display().to_string()),
        privacy = quote(&state_dir.join("privacy.key").display().to_string()),
        brokers = quote(&r.brokers),
        prefix = quote(&r.topic_prefix),
    )
}

fn write_config(path: &Path, text: &str) -> Result<(), EnrolError> {
    let err = |e: std::io::Error| EnrolError::Write(format!("{}: {e}", path.display()));
    if path.exists() {
        let mut backup = path.as_os_str().to_owned();
        backup.push(".before-enrol");
        std::fs::copy(path, PathBuf::from(backup)).map_err(err)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640)).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Trusts exactly the server certificate whose SHA-256 is the pin; the handshake's signatures
/// are still checked with ring's algorithms, so the server must hold that certificate's key.
#[derive(Debug)]
struct Pinned {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        if seen.eq_ignore_ascii_case(&self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {seen}) is not the one the token pins ({})",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// POSTs `body` as JSON to `base_url` + `path` over HTTPS with the pinned certificate; a 2xx
/// answer is read as `T`, anything else is the CERT's refusal.
async fn post_json<B: Serialize, T: DeserializeOwned>(
    base_url: &str,
    pin: &str,
    path: &str,
    body: &B,
) -> Result<T, EnrolError> {
    let connect = |reason: String| EnrolError::Connect {
        url: base_url.to_owned(),
        reason,
    };
    let uri: hyper::Uri = base_url
        .parse()
        .map_err(|e| connect(format!("not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(connect("enrolment needs an https:// URL".into()));
    }
    let host = uri
        .host()
        .ok_or_else(|| connect("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Pinned {
        pin: pin.to_owned(),
        algorithms: provider.signature_verification_algorithms,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| connect(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| connect(e.to_string()))?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| connect(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| connect(format!("TLS: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| connect(e.to_string()))?;
        tokio::spawn(conn);
        let json = serde_json::to_vec(body).map_err(|e| connect(e.to_string()))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| connect(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| connect(e.to_string()))?
            .to_bytes();
        Ok::<_, EnrolError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| connect("no answer within 30 s".into()))??;
    if !status.is_success() {
        let message = serde_json::from_slice::<ApiError>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            |e| e.error,
        );
        return Err(EnrolError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| EnrolError::Answer(e.to_string()))
}
