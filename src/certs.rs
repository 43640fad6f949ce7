//! `pitot certs init`: a CA and certificates for a fleet, with rcgen.
//!
//! Files written into the directory (PEM): `ca.pem`, `ca.key`, `<aggregator-name>.pem` and
//! `.key` copied as `aggregator.pem`/`aggregator.key`, and `<agent>.pem`, `<agent>.key` per
//! agent. An existing `ca.pem`/`ca.key` pair is reused, and existing certificates are kept
//! untouched, so running it again to add agents never breaks the fleet; re-issuing is explicit
//! (`reissue`: `aggregator` or agent names), and a different `--aggregator-name` than the
//! existing certificate's is refused unless the aggregator is re-issued. Each agent certificate
//! names the agent as its DNS subject alternative name and common name: that is the identity
//! the aggregator trusts.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// What `certs init` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Files created, in order.
    pub files: Vec<PathBuf>,
    /// True when an existing CA was reused.
    pub reused_ca: bool,
    /// Certificates that existed and were kept as they were.
    pub kept: Vec<PathBuf>,
    /// Certificates that existed and were replaced, with why.
    pub replaced: Vec<String>,
}

/// The identity the aggregator reads from the certificate in `pem` (first DNS name, else CN).
fn issued_to(pem: &str) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    pitot_aggregator::server::identity(&der)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn leaf(name: &str, server: bool) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![name.to_owned()])
        .with_context(|| format!("`{name}` is not a valid DNS name"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    Ok(params)
}

/// Creates (or extends) a fleet's certificates in `dir`, keeping every existing certificate.
pub fn init(dir: &Path, aggregator_name: &str, agents: &[String]) -> anyhow::Result<Written> {
    init_with(dir, aggregator_name, agents, &[])
}

/// As [`init`], re-issuing the certificates named in `reissue` (`aggregator` or agent names).
pub fn init_with(
    dir: &Path,
    aggregator_name: &str,
    agents: &[String],
    reissue: &[String],
) -> anyhow::Result<Written> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    let ca_pem_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let reused_ca = ca_pem_path.exists() && ca_key_path.exists();
    let (ca_pem, ca_key) = if reused_ca {
        let pem = fs::read_to_string(&ca_pem_path)
            .with_context(|| format!("reading {}", ca_pem_path.display()))?;
        let key = KeyPair::from_pem(
            &fs::read_to_string(&ca_key_path)
                .with_context(|| format!("reading {}", ca_key_path.display()))?,
        )
        .context("parsing ca.key")?;
        (pem, key)
    } else {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Pitot fleet CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        fs::write(&ca_pem_path, cert.pem())
            .with_context(|| format!("writing {}", ca_pem_path.display()))?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        files.push(ca_pem_path.clone());
        files.push(ca_key_path.clone());
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("loading the CA")?;
    let mut kept = Vec::new();
    let mut replaced = Vec::new();
    let mut issue = |name: &str, file: &str, server: bool| -> anyhow::Result<()> {
        let pem_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        if pem_path.exists() && key_path.exists() {
            let existing = fs::read_to_string(&pem_path)
                .with_context(|| format!("reading {}", pem_path.display()))?;
            let old_name = issued_to(&existing).unwrap_or_default();
            if !reused_ca {
                replaced.push(format!(
                    "{} (issued by the CA that was missing; now by the new one)",
                    pem_path.display()
                ));
            } else if reissue.iter().any(|r| r == file) {
                replaced.push(format!(
                    "{} (was issued to `{old_name}`)",
                    pem_path.display()
                ));
            } else if old_name == name {
                kept.push(pem_path);
                return Ok(());
            } else {
                anyhow::bail!(
                    "{} is issued to `{old_name}`, not `{name}`. Replacing it would break every \
                     agent whose uplink.server_name is `{old_name}` at the aggregator's next \
                     restart. To replace it anyway, pass --reissue {file} and update the agents' \
                     server_name; to keep it, pass --aggregator-name {old_name}",
                    pem_path.display()
                );
            }
        }
        let key = KeyPair::generate()?;
        let cert = leaf(name, server)?.signed_by(&key, &issuer)?;
        fs::write(&pem_path, cert.pem())
            .with_context(|| format!("writing {}", pem_path.display()))?;
        write_private(&key_path, &key.serialize_pem())?;
        files.push(pem_path);
        files.push(key_path);
        Ok(())
    };
    issue(aggregator_name, "aggregator", true)?;
    for agent in agents {
        anyhow::ensure!(
            !agent.is_empty()
                && agent != "ca"
                && agent != "aggregator"
                && agent
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "agent name `{agent}` must be letters, digits, '-', '.', '_' (and not ca/aggregator)"
        );
        issue(agent, agent, false)?;
    }
    Ok(Written {
        files,
        reused_ca,
        kept,
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_agents_keeps_every_existing_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let first = init(d, "agg.example", &["gpu-1".to_owned()]).expect("first run");
        assert!(!first.reused_ca && first.kept.is_empty());
        let read = |f: &str| fs::read(d.join(f)).expect("file");
        let (agg, agg_key, gpu1) = (
            read("aggregator.pem"),
            read("aggregator.key"),
            read("gpu-1.pem"),
        );

        let again =
            init(d, "agg.example", &["gpu-1".to_owned(), "gpu-2".to_owned()]).expect("second run");
        assert!(again.reused_ca);
        assert_eq!(again.kept.len(), 2, "aggregator and gpu-1 kept");
        assert_eq!(again.files, vec![d.join("gpu-2.pem"), d.join("gpu-2.key")]);
        assert_eq!(read("aggregator.pem"), agg);
        assert_eq!(read("aggregator.key"), agg_key);
        assert_eq!(read("gpu-1.pem"), gpu1);

        // Another aggregator name is refused, naming the existing one and the flag.
        let err = init(d, "other.example", &[]).expect_err("renaming refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("`agg.example`") && msg.contains("--reissue aggregator"),
            "{msg}"
        );
        assert_eq!(read("aggregator.pem"), agg);

        // Re-issuing is explicit and says what it replaced.
        let re = init_with(d, "other.example", &[], &["aggregator".to_owned()]).expect("reissue");
        assert_eq!(re.replaced.len(), 1, "{:?}", re.replaced);
        assert!(re.replaced[0].contains("agg.example"));
        let pem = fs::read_to_string(d.join("aggregator.pem")).expect("pem");
        assert_eq!(issued_to(&pem).as_deref(), Some("other.example"));
        assert_eq!(read("gpu-1.pem"), gpu1, "agents untouched");
    }
}
