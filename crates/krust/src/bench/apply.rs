//! `krust bench apply`: server-side apply of a Deployment with some seventy fields set, as a
//! client re-applies it with nothing changed and with one field changed, against a plain update
//! (`PUT` of the whole object at its current resourceVersion) that changes the same field, on
//! the same object of the same server in the same run. The update is the reference: the issue
//! asks for changed-field SSA within 2x of it.
//!
//! One client sends the requests one at a time (one in flight) over kept-alive HTTP/1.1: kube-rs's
//! connection pool, which may hold a second connection and alternate between the two. The three
//! kinds are measured in interleaved rounds, so that whatever drifts during the run (the
//! object's history in the store, caches) weighs on all three alike.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Backend;

const NAME: &str = "bench-apply";
const NAMESPACE: &str = "default";
/// The env var whose value the changed-field requests set (first container).
const CHANGED_ENV: &str = "BENCH_REVISION";

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Measured requests of each kind (no-change SSA, changed SSA, update).
    #[arg(long, default_value_t = 2_000)]
    iterations: usize,
    /// Unmeasured requests of each kind before the measured ones.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Interleaved rounds the measured requests are split into.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// The server's store (etcd is Debian's etcd-server, started on loopback by the benchmark).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    store: Backend,
}

/// The applied configuration, with `revision` as the value of the changed env var.
fn configuration(revision: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"app": "shop", "tier": "backend", "team": "payments", "version": "1.4.2"},
            "annotations": {
                "bench.krust.dev/owner": "payments@example.com",
                "bench.krust.dev/description": "checkout service",
                "bench.krust.dev/ticket": "PAY-1234",
            },
        },
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 5,
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "shop", "tier": "backend"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {"app": "shop", "tier": "backend", "version": "1.4.2"},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000},
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/shop/checkout:1.4.2",
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["--port=8080", "--metrics-port=9090"],
                            "ports": [
                                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                            ],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {"name": CHANGED_ENV, "value": revision},
                                {"name": "GOMAXPROCS", "value": "2"},
                            ],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/shop"}],
                        },
                        {
                            "name": "proxy",
                            "image": "registry.example.com/mesh/proxy:2.9.0",
                            "args": ["proxy", "--admin-port=15000"],
                            "ports": [{"name": "admin", "containerPort": 15000, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "sidecar"},
                                {"name": "UPSTREAM", "value": "127.0.0.1:8080"},
                            ],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "128Mi"},
                            },
                            "readinessProbe": {"tcpSocket": {"port": 15000}, "periodSeconds": 5},
                        },
                    ],
                },
            },
        },
    })
}

/// The fields a configuration sets: every scalar, every list of scalars (one atomic field),
/// and every empty object or list (which is set, e.g. `emptyDir: {}`); lists of objects count
/// the fields of their items.
fn leaf_fields(value: &Value) -> usize {
    match value {
        Value::Object(map) if map.is_empty() => 1,
        Value::Object(map) => map.values().map(leaf_fields).sum(),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            items.iter().map(leaf_fields).sum()
        }
        _ => 1,
    }
}

fn resource_version(deployment: &Deployment) -> anyhow::Result<&str> {
    deployment
        .metadata
        .resource_version
        .as_deref()
        .context("the server returned no resourceVersion")
}

fn changed_env_mut(deployment: &mut Deployment) -> Option<&mut Option<String>> {
    let container = deployment.spec.as_mut()?.template.spec.as_mut()?.containers.first_mut()?;
    let var = container.env.as_mut()?.iter_mut().find(|v| v.name == CHANGED_ENV)?;
    Some(&mut var.value)
}

fn changed_env(deployment: &Deployment) -> Option<&str> {
    let container = deployment.spec.as_ref()?.template.spec.as_ref()?.containers.first()?;
    let var = container.env.as_ref()?.iter().find(|v| v.name == CHANGED_ENV)?;
    var.value.as_deref()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// SSA of the configuration the object already has.
    SsaNoop,
    /// SSA with a new value of the changed env var.
    SsaChanged,
    /// `PUT` of the last object read, with a new value of the changed env var.
    Update,
}

/// The latencies of one kind of request and the wall time its measured loops took.
#[derive(Default)]
struct Timings {
    samples: Vec<Duration>,
    elapsed: Duration,
}

impl Timings {
    fn per_s(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// (p50, p99) in milliseconds.
    fn p50_p99_ms(&mut self) -> (f64, f64) {
        let q = super::quantiles(&mut self.samples, &[0.5, 0.99]);
        (q[0] * 1000.0, q[1] * 1000.0)
    }
}

/// The client's view of the one object: what it last applied and what the server last returned.
struct Client {
    api: Api<Deployment>,
    apply: PatchParams,
    live: Deployment,
    /// The changed env var's value in the last applied configuration.
    applied: String,
    /// The changed env var's value the last write set.
    written: String,
    serial: u64,
    /// Writes to the object so far (its revisions, which the store keeps as history).
    writes: u64,
}

impl Client {
    /// Creates the object by applying its configuration.
    async fn create(api: Api<Deployment>) -> anyhow::Result<Self> {
        let apply = PatchParams::apply("bench").force();
        let applied = "initial".to_owned();
        let live = api
            .patch(NAME, &apply, &Patch::Apply(configuration(&applied)))
            .await
            .context("the first apply (which creates the Deployment)")?;
        resource_version(&live)?;
        Ok(Self { api, apply, live, written: applied.clone(), applied, serial: 0, writes: 1 })
    }

    async fn step(&mut self, op: Op) -> anyhow::Result<()> {
        let before = resource_version(&self.live)?.to_owned();
        let value = match op {
            Op::SsaNoop => self.applied.clone(),
            Op::SsaChanged | Op::Update => {
                self.serial += 1;
                format!(
                    "{}-{}",
                    if matches!(op, Op::Update) { "update" } else { "ssa" },
                    self.serial
                )
            }
        };
        let returned = match op {
            Op::SsaNoop | Op::SsaChanged => {
                let patch = Patch::Apply(configuration(&value));
                let returned = self.api.patch(NAME, &self.apply, &patch).await.context("apply")?;
                self.applied.clone_from(&value);
                returned
            }
            Op::Update => {
                let mut object = self.live.clone();
                *changed_env_mut(&mut object).context("the live object lost its env var")? =
                    Some(value.clone());
                self.api.replace(NAME, &PostParams::default(), &object).await.context("update")?
            }
        };
        let after = resource_version(&returned)?;
        match op {
            Op::SsaNoop if after != before => bail!(
                "an apply that changes nothing moved the resourceVersion from {before} to {after}"
            ),
            Op::SsaChanged | Op::Update if after == before => {
                bail!("{op:?} changed {CHANGED_ENV} but the resourceVersion stayed {before}")
            }
            _ => {}
        }
        if changed_env(&returned) != Some(value.as_str()) {
            bail!(
                "{op:?} set {CHANGED_ENV}={value} but the server returned {:?}",
                changed_env(&returned)
            );
        }
        if !matches!(op, Op::SsaNoop) {
            self.writes += 1;
        }
        self.written = value;
        self.live = returned;
        Ok(())
    }

    async fn run(&mut self, op: Op, n: usize, timings: Option<&mut Timings>) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.step(op).await?;
            samples.push(t.elapsed());
        }
        if let Some(timings) = timings {
            timings.elapsed += started.elapsed();
            timings.samples.extend(samples);
        }
        Ok(())
    }

    /// One round: `n` requests of each kind. The no-change applies start from an unmeasured
    /// apply, since the previous round's updates left another value in the object.
    async fn round(&mut self, n: usize, t: &mut [Timings; 3]) -> anyhow::Result<()> {
        self.step(Op::SsaChanged).await?;
        self.run(Op::SsaNoop, n, Some(&mut t[0])).await?;
        self.run(Op::SsaChanged, n, Some(&mut t[1])).await?;
        self.run(Op::Update, n, Some(&mut t[2])).await
    }

    /// Reads the object back: it must hold the last write.
    async fn check_read_back(&self) -> anyhow::Result<()> {
        let read = self.api.get(NAME).await.context("read back")?;
        if changed_env(&read) != Some(self.written.as_str())
            || read.metadata.resource_version != self.live.metadata.resource_version
        {
            bail!(
                "read back {CHANGED_ENV}={:?} at resourceVersion {:?}, but the last write set {} at {:?}",
                changed_env(&read),
                read.metadata.resource_version,
                self.written,
                self.live.metadata.resource_version
            );
        }
        Ok(())
    }
}

async fn wait_ready(client: &kube::Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        if client.request_text(req).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("/readyz never passed");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let etcd_dir = tempfile::tempdir()?;
    let (store, _etcd) = match args.store {
        Backend::Sqlite => (vec!["--store".to_owned(), "sqlite".to_owned()], None),
        Backend::Memory => (vec!["--store".to_owned(), "memory".to_owned()], None),
        Backend::Etcd => {
            let options = krust_store::etcd::LocalEtcdOptions::default();
            let etcd =
                krust_store::etcd::spawn_local_etcd(etcd_dir.path(), &options).await.context(
                    "cannot start etcd (install it with scripts/deps.sh, or use another --store)",
                )?;
            let url = etcd.client_url().to_owned();
            (vec!["--store".into(), "etcd".into(), "--etcd-servers".into(), url], Some(etcd))
        }
    };
    // The API server alone: no controller writes to the Deployment while it is measured (the
    // Deployment controller's status writes would move the resourceVersion under the
    // no-change applies).
    let mut server_args = vec!["--disable-controller-manager"];
    server_args.extend(store.iter().map(String::as_str));
    let server = super::spawn::spawn_server(Duration::from_secs(20), &server_args).await?;
    let client = crate::server::kube_client(&server.kubeconfig, "krust-bench").await?;
    wait_ready(&client).await?;

    let fields = leaf_fields(&configuration("0"));
    let mut bench = Client::create(Api::namespaced(client, NAMESPACE)).await?;
    for op in [Op::SsaChanged, Op::SsaNoop, Op::Update] {
        bench.run(op, args.warmup, None).await?;
    }
    let mut timings: [Timings; 3] = Default::default();
    let rounds = args.rounds as usize;
    for r in 0..rounds {
        let n = args.iterations / rounds + usize::from(r < args.iterations % rounds);
        bench.round(n, &mut timings).await?;
    }
    bench.check_read_back().await?;
    // And once more after an apply, so that both kinds of write are read back.
    bench.step(Op::SsaChanged).await?;
    bench.check_read_back().await?;

    let [mut noop, mut ssa, mut update] = timings;
    let store = format!("{:?}", args.store).to_lowercase();
    let (noop_p50, noop_p99) = noop.p50_p99_ms();
    let (ssa_p50, ssa_p99) = ssa.p50_p99_ms();
    let (update_p50, update_p99) = update.p50_p99_ms();
    let ratio = update.per_s() / ssa.per_s().max(f64::MIN_POSITIVE);
    println!(
        "apply bench: a Deployment with {fields} fields, {store} store, {} requests of each kind \
         after {} warm-up, in {rounds} interleaved rounds; one client, one request in flight, \
         kept-alive HTTP/1.1 (TLS, admin client certificate)",
        args.iterations, args.warmup
    );
    println!("  {:<28} {:>8} {:>9} {:>9}", "request", "ops/s", "p50 ms", "p99 ms");
    for (name, t, p50, p99) in [
        ("SSA, no change", &noop, noop_p50, noop_p99),
        ("SSA, one field changed", &ssa, ssa_p50, ssa_p99),
        ("update (PUT), one field", &update, update_p50, update_p99),
    ] {
        println!("  {name:<28} {:>8.0} {p50:>9.3} {p99:>9.3}", t.per_s());
    }
    println!("  SSA is {ratio:.2}x slower than an update (the goal: at most 2x)");
    println!("  the object was written {} times in the run", bench.writes);

    let line = json!({
        "bench": "apply",
        "ssa_per_s": ssa.per_s().round(),
        "update_per_s": update.per_s().round(),
        "ssa_to_update_ratio": round3(ratio),
        "ssa_noop_per_s": noop.per_s().round(),
        "ssa_p50_ms": round3(ssa_p50), "ssa_p99_ms": round3(ssa_p99),
        "ssa_noop_p50_ms": round3(noop_p50), "ssa_noop_p99_ms": round3(noop_p99),
        "update_p50_ms": round3(update_p50), "update_p99_ms": round3(update_p99),
        "fields": fields,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "store": store,
        "object_writes": bench.writes,
        "transport": "http/1.1 keep-alive",
    });
    println!("{line}");
    drop(server);
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_fields_counts_scalars_atomic_lists_and_list_items() {
        let value = json!({
            "a": 1,
            "b": {"c": "x", "d": true},
            "args": ["--x", "--y"],
            "empty": {},
            "ports": [{"name": "http", "port": 80}, {"name": "admin"}],
        });
        assert_eq!(leaf_fields(&value), 1 + 2 + 1 + 1 + 3);
    }

    #[test]
    fn the_configuration_sets_at_least_fifty_fields() {
        assert!(leaf_fields(&configuration("0")) >= 50);
    }

    #[test]
    fn the_configuration_is_a_deployment_with_the_changed_env_var() -> anyhow::Result<()> {
        let mut deployment: Deployment = serde_json::from_value(configuration("7"))?;
        assert_eq!(changed_env(&deployment), Some("7"));
        *changed_env_mut(&mut deployment).context("env var")? = Some("8".into());
        assert_eq!(changed_env(&deployment), Some("8"));
        Ok(())
    }
}
