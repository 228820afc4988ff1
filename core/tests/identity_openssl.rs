//! Varde's collector keys against OpenSSL, an independent Ed25519 implementation: a key OpenSSL
//! made is read from its PEM file, OpenSSL's signatures verify under Varde's public key, and
//! Varde's signatures verify in OpenSSL.

use std::path::Path;
use std::process::Command;

use varde_core::CollectorKey;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn keys_and_signatures_agree_with_openssl_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("collector.key");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&key_file)]);
    let key = CollectorKey::from_pem(&std::fs::read_to_string(&key_file).expect("read"))
        .expect("OpenSSL's PKCS#8 Ed25519 key");

    // The public key OpenSSL derives is the last 32 bytes of its SubjectPublicKeyInfo.
    let spki = openssl(&["pkey", "-in", path(&key_file), "-pubout", "-outform", "DER"]);
    assert_eq!(&spki[spki.len() - 32..], &key.public_key().0[..]);

    // OpenSSL signs, Varde verifies.
    let message = dir.path().join("message");
    std::fs::write(&message, b"varde batch 1").expect("write");
    let sig = openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        path(&key_file),
        "-in",
        path(&message),
    ]);
    key.public_key()
        .verify(b"varde batch 1", &sig)
        .expect("OpenSSL's signature verifies");
    assert!(key.public_key().verify(b"varde batch 2", &sig).is_err());

    // Varde signs, OpenSSL verifies (with the public key only).
    let pub_file = dir.path().join("collector.pub");
    openssl(&[
        "pkey",
        "-in",
        path(&key_file),
        "-pubout",
        "-out",
        path(&pub_file),
    ]);
    let sig_file = dir.path().join("sig");
    std::fs::write(&sig_file, key.sign(b"varde batch 1")).expect("write");
    openssl(&[
        "pkeyutl",
        "-verify",
        "-rawin",
        "-pubin",
        "-inkey",
        path(&pub_file),
        "-in",
        path(&message),
        "-sigfile",
        path(&sig_file),
    ]);

    // A key Varde made is one OpenSSL reads, with the same public key.
    let (ours, pem) = CollectorKey::generate().expect("key");
    let ours_file = dir.path().join("ours.key");
    std::fs::write(&ours_file, pem).expect("write");
    let spki = openssl(&[
        "pkey",
        "-in",
        path(&ours_file),
        "-pubout",
        "-outform",
        "DER",
    ]);
    assert_eq!(&spki[spki.len() - 32..], &ours.public_key().0[..]);
}
