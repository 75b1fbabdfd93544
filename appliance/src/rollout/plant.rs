//! The plant server's side of rollouts: the packages in `plant.packages_dir`
//! (each verified before it is offered), and sending an order — a package,
//! a recipe's standard text — to stations as retained `rollout/v1` messages
//! on their `cmd/rollout`, each recorded in the database first. A station's
//! message is the whole of what it should run: it starts from the station's
//! previous rollout, so a standard sent later keeps the model sent before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use delivery::link;
use firmware_config::StationConfig;
use futures_util::future::BoxFuture;
use review_web::rollout::{Offer, Order};

use super::file_name_ok;
use firmware_config::is_name;

/// Sends rollouts for the plant server's rollout room.
pub struct Desk {
    store: store::Store,
    packages_dir: PathBuf,
    /// Where stations fetch package files: `{url}/rollout/packages/`.
    url: String,
    prefix: String,
    client: link::Client,
}

impl Desk {
    pub fn new(
        cfg: &StationConfig,
        store: store::Store,
        client: link::Client,
    ) -> anyhow::Result<Self> {
        let url = if cfg.plant.url.is_empty() {
            anyhow::ensure!(
                !cfg.http.bind.ip().is_unspecified(),
                "plant.url is empty and http.bind {} is a wildcard address: set plant.url to the address stations reach this server at",
                cfg.http.bind
            );
            format!("http://{}", cfg.http.bind)
        } else {
            anyhow::ensure!(
                cfg.plant.url.starts_with("http://") || cfg.plant.url.starts_with("https://"),
                "plant.url `{}` must start with http:// or https://",
                cfg.plant.url
            );
            cfg.plant.url.trim_end_matches('/').to_string()
        };
        Ok(Self {
            store,
            packages_dir: cfg.plant.packages_dir.clone(),
            url,
            prefix: cfg.mqtt.topic_prefix.clone(),
            client,
        })
    }
}

/// Every plain file of a package folder and its sha256.
fn package_files(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !file_name_ok(&name) || !entry.path().is_file() {
            continue;
        }
        files.insert(name, fusion::package::file_sha256(&entry.path())?);
    }
    Ok(files)
}

/// The package in `dir`, verified as a station would (every file the
/// manifest lists, at FP32 and at INT8 where it has INT8 graphs).
fn offer(dir: &Path) -> Offer {
    let folder = dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut offer = Offer {
        folder,
        ..Offer::default()
    };
    match fusion::ModelPackage::open(dir, firmware_config::Precision::Fp32) {
        Ok(p) => {
            offer.name = p.manifest.name.clone();
            offer.version = p.manifest.version.clone();
            offer.sha256 = p.sha256.clone();
            match package_files(dir) {
                Ok(files) => offer.files = files.len(),
                Err(e) => offer.problem = Some(format!("{e:#}")),
            }
        }
        Err(e) => offer.problem = Some(e.to_string()),
    }
    offer
}

impl review_web::rollout::Desk for Desk {
    fn offers(&self) -> BoxFuture<'_, Vec<Offer>> {
        let dir = self.packages_dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return Vec::new();
                };
                let mut offers: Vec<Offer> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().join("model.toml").is_file())
                    .filter(|e| file_name_ok(&e.file_name().to_string_lossy()))
                    .map(|e| offer(&e.path()))
                    .collect();
                offers.sort_by(|a, b| a.folder.cmp(&b.folder));
                offers
            })
            .await
            .unwrap_or_default()
        })
    }

    fn send<'a>(
        &'a self,
        order: Order,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Vec<record::Rollout>, String>> {
        Box::pin(async move {
            self.send_order(order, by)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn file(&self, folder: &str, file: &str) -> Option<PathBuf> {
        (file_name_ok(folder) && file_name_ok(file))
            .then(|| self.packages_dir.join(folder).join(file))
    }
}

impl Desk {
    async fn send_order(&self, order: Order, by: &str) -> anyhow::Result<Vec<record::Rollout>> {
        anyhow::ensure!(!order.stations.is_empty(), "choose at least one station");
        if let Some(bad) = order.stations.iter().find(|s| !is_name(s)) {
            anyhow::bail!("`{bad}` is not a station name (1-64 letters, digits, `-`, `_`)");
        }
        anyhow::ensure!(
            order.package.is_some() || order.standard.is_some(),
            "a rollout sends a package, a standard or both"
        );
        let model = match &order.package {
            None => None,
            Some(folder) => {
                anyhow::ensure!(
                    file_name_ok(folder),
                    "`{folder}` is not a package folder name"
                );
                if let Some(p) = &order.precision {
                    super::precision(p)?;
                }
                let dir = self.packages_dir.join(folder);
                let (checked, files) = tokio::task::spawn_blocking(move || {
                    let checked = offer(&dir);
                    let files = package_files(&dir);
                    (checked, files)
                })
                .await?;
                if let Some(problem) = checked.problem {
                    anyhow::bail!("package `{folder}` is not sent: {problem}");
                }
                Some(record::ModelRollout {
                    url: format!("{}/rollout/packages/{folder}/", self.url),
                    files: files?,
                    precision: order.precision.clone(),
                    apply: order.apply.unwrap_or(record::Apply::Reload),
                })
            }
        };
        let standard = match &order.standard {
            None => None,
            Some(s) => {
                let recipe = s.recipe.trim();
                anyhow::ensure!(!recipe.is_empty(), "the standard needs its recipe's name");
                let parsed = fusion::Standard::new(recipe, s.text.clone());
                anyhow::ensure!(
                    !parsed.clauses.is_empty(),
                    "the standard for `{recipe}` has no numbered clause; number each rule `1.`, `1)`, `(1)` or `4.2.1` so verdicts can cite it"
                );
                Some((
                    recipe.to_string(),
                    record::StandardRollout {
                        text: s.text.clone(),
                        sha256: parsed.sha256.clone(),
                    },
                ))
            }
        };
        let mut sent = Vec::new();
        for station in &order.stations {
            let before = store::rollouts::latest(&self.store, station).await?;
            let (mut standards, kept_model) = before
                .map(|b| (b.rollout.standards, b.rollout.model))
                .unwrap_or_default();
            if let Some((recipe, text)) = &standard {
                standards.insert(recipe.clone(), text.clone());
            }
            let rollout = record::Rollout {
                schema: record::ROLLOUT_SCHEMA.into(),
                id: uuid::Uuid::now_v7().to_string(),
                station: station.clone(),
                sent_by: by.to_string(),
                sent_at: record::time::now(),
                model: model.clone().or(kept_model),
                standards,
            };
            let payload = serde_json::to_string(&rollout)?;
            anyhow::ensure!(
                payload.len() <= delivery::command_link::MAX_COMMAND_BYTES,
                "the rollout for `{station}` is {} bytes; a station takes commands of at most {}",
                payload.len(),
                delivery::command_link::MAX_COMMAND_BYTES
            );
            store::rollouts::record(&self.store, &rollout).await?;
            let topic = delivery::Topics::new(&self.prefix, station).command("rollout");
            self.client
                .publish(
                    &topic,
                    rumqttc::QoS::AtLeastOnce,
                    true,
                    payload.into_bytes(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("publishing on {topic}: {e}"))?;
            tracing::info!(rollout = %rollout.id, station, by, "rollout sent");
            sent.push(rollout);
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_climb_out_are_not_files() {
        assert!(file_name_ok("vision_encoder.int8.onnx"));
        assert!(!file_name_ok("../secrets"));
        assert!(!file_name_ok(".hidden"));
        assert!(!file_name_ok("a/b"));
        assert!(is_name("st-1_b"));
        assert!(!is_name("st/1"));
        assert!(!is_name("+"));
    }
}
