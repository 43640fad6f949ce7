//! `pitot certs init`: a CA and certificates for a fleet, with rcgen.
//!
//! Files written into the directory (PEM): `ca.pem`, `ca.key`, `<aggregator-name>.pem` and
//! `.key` copied as `aggregator.pem`/`aggregator.key`, and `<agent>.pem`, `<agent>.key` per
//! agent. An existing `ca.pem`/`ca.key` pair is reused, so agents can be added to a fleet
//! later without re-issuing everyone. Each agent certificate names the agent as its DNS subject
//! alternative name and common name: that is the identity the aggregator trusts.

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

/// Creates (or extends) a fleet's certificates in `dir`.
pub fn init(dir: &Path, aggregator_name: &str, agents: &[String]) -> anyhow::Result<Written> {
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
    let mut issue = |name: &str, file: &str, server: bool| -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let cert = leaf(name, server)?.signed_by(&key, &issuer)?;
        let pem_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
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
    Ok(Written { files, reused_ca })
}
