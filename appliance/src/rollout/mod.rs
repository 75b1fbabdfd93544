//! Rollouts from the plant server, station side: the files a `rollout/v1`
//! message names are fetched over HTTP into the data folder and each is
//! refused unless its sha256 is the one the message (which came over the
//! broker's authenticated connection) gave; a rolled-out standard's text is
//! checked the same way and kept beside them. What the station then does
//! with them — the safe reload, shadow mode, a standard swapped between
//! frames — is the station's control (`pipeline::control`). The plant
//! server's side, which composes and sends rollouts, is [`plant`].

pub mod plant;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use record::{ModelRollout, StandardRollout};
use sha2::{Digest, Sha256};

/// The largest file a rollout may bring (a model graph).
const MAX_FILE_BYTES: u64 = 8 << 30;

/// Where a package lands: `{data_dir}/rollouts/packages/{model.toml sha256}`.
pub fn package_dir(data_dir: &Path, manifest_sha256: &str) -> PathBuf {
    data_dir
        .join("rollouts")
        .join("packages")
        .join(manifest_sha256)
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub dir: PathBuf,
    /// Files downloaded now (the others were already there, verified).
    pub downloaded: usize,
    pub bytes: u64,
}

/// Checks the message before anything is fetched: a URL of the plant
/// server's package folder, file names without any path in them, and a
/// sha256 for each, `model.toml` among them.
pub fn check(m: &ModelRollout) -> anyhow::Result<&str> {
    anyhow::ensure!(
        (m.url.starts_with("http://") || m.url.starts_with("https://")) && m.url.ends_with('/'),
        "model.url `{}` must be an http:// or https:// folder URL ending in `/`",
        m.url
    );
    for (name, sha) in &m.files {
        anyhow::ensure!(
            file_name_ok(name),
            "model.files: `{name}` is not a plain file name (letters, digits, `.`, `_`, `-`)"
        );
        anyhow::ensure!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "model.files.{name}: `{sha}` is not a sha256 (64 lowercase hex digits)"
        );
    }
    m.manifest_sha256()
        .context("model.files must list model.toml (its sha256 names the package)")
}

/// A plain file or folder name: nothing that climbs out of its folder.
pub(crate) fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The precision a rollout names (`fp32`, `int8`).
pub(crate) fn precision(name: &str) -> anyhow::Result<firmware_config::Precision> {
    match name {
        "fp32" => Ok(firmware_config::Precision::Fp32),
        "int8" => Ok(firmware_config::Precision::Int8),
        other => anyhow::bail!("model.precision `{other}`; allowed: fp32, int8"),
    }
}

/// Fetches every file of the package that is not already in place with the
/// right sha256, each to a temporary name first and renamed once verified.
/// Blocking: run it off the async runtime.
pub fn fetch_package(m: &ModelRollout, data_dir: &Path) -> anyhow::Result<Fetched> {
    let manifest = check(m)?;
    let dir = package_dir(data_dir, manifest);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut fetched = Fetched {
        dir: dir.clone(),
        downloaded: 0,
        bytes: 0,
    };
    for (name, want) in &m.files {
        let target = dir.join(name);
        if target.exists() && fusion::package::file_sha256(&target)? == *want {
            continue;
        }
        let url = format!("{}{name}", m.url);
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("fetching {url}"))?;
        let mut body = response
            .body_mut()
            .with_config()
            .limit(MAX_FILE_BYTES)
            .reader();
        let partial = dir.join(format!(".{name}.part"));
        let mut out = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = body
                .read(&mut buf)
                .with_context(|| format!("reading {url}"))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", partial.display()))?;
            bytes += n as u64;
        }
        out.sync_all()?;
        let got = hex::encode(hash.finalize());
        if got != *want {
            let _ = std::fs::remove_file(&partial);
            anyhow::bail!(
                "{url}: sha256 {got} is not the {want} the rollout gave; the file is refused and nothing changes"
            );
        }
        std::fs::rename(&partial, &target)
            .with_context(|| format!("renaming into {}", target.display()))?;
        fetched.downloaded += 1;
        fetched.bytes += bytes;
    }
    Ok(fetched)
}

/// Keeps a rolled-out standard's text as
/// `{data_dir}/rollouts/standards/{sha256}.txt`, after checking its sha256.
pub fn keep_standard(
    recipe: &str,
    s: &StandardRollout,
    data_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let got = hex::encode(Sha256::digest(s.text.as_bytes()));
    anyhow::ensure!(
        got == s.sha256,
        "standards.{recipe}: the text's sha256 is {got}, not the {} the rollout gave",
        s.sha256
    );
    let dir = data_dir.join("rollouts").join("standards");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{got}.txt"));
    let partial = dir.join(format!(".{got}.part"));
    std::fs::write(&partial, s.text.as_bytes())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(url: &str, files: &[(&str, &str)]) -> ModelRollout {
        ModelRollout {
            url: url.into(),
            files: files
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            precision: None,
            apply: record::Apply::Reload,
        }
    }

    #[test]
    fn a_message_naming_paths_or_lacking_the_manifest_is_refused() {
        let sha = "a".repeat(64);
        let ok = rollout("http://plant:8090/packages/x/", &[("model.toml", &sha)]);
        assert_eq!(check(&ok).unwrap(), sha);
        for (bad, says) in [
            (
                rollout("ftp://plant/x/", &[("model.toml", &sha)]),
                "model.url",
            ),
            (
                rollout("http://plant/x", &[("model.toml", &sha)]),
                "ending in `/`",
            ),
            (
                rollout(
                    "http://plant/x/",
                    &[("model.toml", &sha), ("../etc/passwd", &sha)],
                ),
                "not a plain file name",
            ),
            (
                rollout(
                    "http://plant/x/",
                    &[("model.toml", &sha), (".hidden", &sha)],
                ),
                "not a plain file name",
            ),
            (
                rollout("http://plant/x/", &[("model.toml", "ABC")]),
                "not a sha256",
            ),
            (
                rollout("http://plant/x/", &[("vision_encoder.onnx", &sha)]),
                "model.toml",
            ),
        ] {
            let e = check(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_standard_whose_text_does_not_match_its_sha256_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = "1. No scratches longer than 2 mm.".to_string();
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let path = keep_standard(
            "housing",
            &StandardRollout {
                text: text.clone(),
                sha256: sha256.clone(),
            },
            dir.path(),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), text);
        let e = keep_standard(
            "housing",
            &StandardRollout {
                text: "1. Anything goes.".into(),
                sha256,
            },
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("standards.housing"), "{e}");
    }
}
