//! The cluster's certificates: a CA made on first start, a serving certificate for the API
//! server and an admin client certificate (`CN=admin`, `O=system:masters`), all kept as PEM
//! files under `<data-dir>/pki/`, plus the admin kubeconfig that points kubectl at the server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// The CA's subject; the issuer is rebuilt from it (and the stored key) on later starts.
const CA_COMMON_NAME: &str = "krust-ca";
/// Upstream kubeadm gives the CA ten years and leaf certificates one.
const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);

/// Paths of the PEM files under `<data-dir>/pki`.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("pki") }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }
}

/// PEM material the server needs at run time.
#[derive(Debug, Clone)]
pub struct Pki {
    pub paths: PkiPaths,
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl Pki {
    /// Loads the PKI under `data_dir`, creating whatever is missing. `serving_ips` and
    /// `serving_names` become the serving certificate's subject alternative names; a serving
    /// certificate that lacks one of them is issued anew.
    pub fn load_or_create(
        data_dir: &Path,
        serving_ips: &[IpAddr],
        serving_names: &[String],
    ) -> Result<Self> {
        let paths = PkiPaths::new(data_dir);
        create_private_dir(&paths.dir)?;

        let (ca_key, ca_cert_pem) = match (read_opt(&paths.ca_key())?, read_opt(&paths.ca_cert())?)
        {
            (Some(key), Some(cert)) => (KeyPair::from_pem(&key).map_err(pki_err("ca.key"))?, cert),
            _ => {
                let key = KeyPair::generate().map_err(pki_err("CA key"))?;
                let cert = ca_params().self_signed(&key).map_err(pki_err("CA certificate"))?;
                write_private(&paths.ca_key(), &key.serialize_pem())?;
                write_file(&paths.ca_cert(), &cert.pem())?;
                (key, cert.pem())
            }
        };
        let issuer = Issuer::new(ca_params(), ca_key);

        let wanted_sans = SanList::new(serving_ips, serving_names);
        let existing = read_opt(&paths.serving_cert())?.zip(read_opt(&paths.serving_key())?);
        let (serving_cert_pem, serving_key_pem) = match existing {
            // The SAN list is recorded beside the certificate, so a changed bind address or
            // name reissues it without our having to parse X.509.
            Some((cert, key)) if read_opt(&san_record(&paths))? == Some(wanted_sans.record()) => {
                (cert, key)
            }
            _ => {
                let (cert, key) = issue_serving(&issuer, &wanted_sans)?;
                write_private(&paths.serving_key(), &key)?;
                write_file(&paths.serving_cert(), &cert)?;
                write_file(&san_record(&paths), &wanted_sans.record())?;
                (cert, key)
            }
        };

        let (admin_cert_pem, admin_key_pem) =
            match read_opt(&paths.admin_cert())?.zip(read_opt(&paths.admin_key())?) {
                Some(pair) => pair,
                None => {
                    let (cert, key) = issue_client(&issuer, "admin", &["system:masters"])?;
                    write_private(&paths.admin_key(), &key)?;
                    write_file(&paths.admin_cert(), &cert)?;
                    (cert, key)
                }
            };

        Ok(Self {
            paths,
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
        })
    }

    /// A kubeconfig for the admin user against `server_url`, with all material inline so the
    /// file can be copied elsewhere.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: krust\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\n\
             users:\n\
             - name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
             contexts:\n\
             - name: krust\n  context:\n    cluster: krust\n    user: admin\n    namespace: default\n\
             current-context: krust\n\
             preferences: {{}}\n",
            ca = b64(&self.ca_cert_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }
}

/// Writes the admin kubeconfig to `path` atomically (a reader never sees half a file).
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_private(&tmp, contents)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_owned(), source })
}

struct SanList {
    ips: Vec<IpAddr>,
    names: Vec<String>,
}

impl SanList {
    fn new(ips: &[IpAddr], names: &[String]) -> Self {
        let mut ips = ips.to_vec();
        ips.sort();
        ips.dedup();
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        Self { ips, names }
    }

    fn record(&self) -> String {
        let mut out: Vec<String> = self.ips.iter().map(|ip| ip.to_string()).collect();
        out.extend(self.names.iter().cloned());
        out.join("\n") + "\n"
    }
}

fn san_record(paths: &PkiPaths) -> PathBuf {
    paths.dir.join("apiserver.sans")
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Only the name, key usages and key identify the issuer, so rebuilding these params on a
    // later start (with new dates) signs certificates that chain to the stored CA certificate.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    params
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + LEAF_VALIDITY;
    params
}

fn issue_serving(issuer: &Issuer<'_, KeyPair>, sans: &SanList) -> Result<(String, String)> {
    let mut params = leaf_params("kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for ip in &sans.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for name in &sans.names {
        let name = name.clone().try_into().map_err(pki_err("serving certificate DNS name"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    let key = KeyPair::generate().map_err(pki_err("serving key"))?;
    let cert = params.signed_by(&key, issuer).map_err(pki_err("serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a client certificate the way upstream reads identities: CN is the user, each O a group.
pub fn issue_client(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String)> {
    let mut params = leaf_params(user);
    for group in groups {
        params.distinguished_name.push(DnType::OrganizationName, *group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(pki_err("client key"))?;
    let cert = params.signed_by(&key, issuer).map_err(pki_err("client certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pki_err(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |source| Error::Pki { what, source }
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: path.to_owned(), source }),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io { path: dir.to_owned(), source })
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| Error::Io { path: path.to_owned(), source })
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io { path: path.to_owned(), source })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ips = ["127.0.0.1".parse().expect("ip")];
        let first = Pki::load_or_create(dir.path(), &ips, &["localhost".into()]).expect("create");
        let again = Pki::load_or_create(dir.path(), &ips, &["localhost".into()]).expect("reload");
        assert_eq!(first.ca_cert_pem, again.ca_cert_pem);
        assert_eq!(first.serving_cert_pem, again.serving_cert_pem);
        assert_eq!(first.admin_key_pem, again.admin_key_pem);
    }

    #[test]
    fn new_san_reissues_serving_cert_but_keeps_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::load_or_create(dir.path(), &["127.0.0.1".parse().expect("ip")], &[])
            .expect("create");
        let b = Pki::load_or_create(dir.path(), &["127.0.0.2".parse().expect("ip")], &[])
            .expect("reissue");
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.serving_cert_pem, b.serving_cert_pem);
    }

    #[test]
    fn kubeconfig_embeds_material() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path(), &["127.0.0.1".parse().expect("ip")], &[])
            .expect("create");
        let kc = pki.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert!(kc.contains("client-certificate-data: "));
        assert!(kc.contains("current-context: krust"));
    }
}
