//! The campaign: acquire, renew until the deadline passes or someone else holds the Lease, and
//! campaign again; release on cancellation.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::JITTER_FACTOR;
use crate::record::{self, Observed};
use crate::{Error, LeaderElectionConfig, Result};

/// One round on the Lease.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// This elector holds the Lease now (created, taken over or renewed).
    Held,
    /// A live holder other than this elector has it.
    HeldByOther,
    /// Another writer changed the Lease between our read and our write.
    Conflict,
}

/// Campaigns for one Lease; see [`crate::run`].
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Observed,
}

impl LeaderElector {
    /// Checks `config` and prepares the elector; nothing is written until [`Self::run`].
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Result<Self> {
        config.validate()?;
        let api = Api::namespaced(client, &config.lock.namespace);
        Ok(Self { api, config, observed: Observed::default() })
    }

    /// Campaigns until `shutdown` is cancelled, reporting leadership on `leading` (see
    /// [`crate::run`]). Every attempt is awaited here; nothing outlives the call.
    pub async fn run(mut self, shutdown: CancellationToken, leading: watch::Sender<bool>) {
        leading.send_replace(false);
        loop {
            if !self.acquire(&shutdown).await {
                return;
            }
            tracing::info!(lease = %self.lease(), identity = %self.config.lock.identity, "acquired the lease");
            leading.send_replace(true);
            let cancelled = self.renew(&shutdown).await;
            leading.send_replace(false);
            if cancelled {
                if self.config.release_on_cancel {
                    self.release().await;
                }
                return;
            }
            tracing::warn!(lease = %self.lease(), holder = %self.observed.holder(), "lost the lease");
        }
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.config.lock.namespace, self.config.lock.name)
    }

    /// Tries every jittered `retry_period` until it holds the Lease (`true`) or is cancelled.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        let mut holder = String::new();
        loop {
            let round = tokio::select! {
                _ = shutdown.cancelled() => return false,
                r = self.try_acquire_or_renew() => r,
            };
            match round {
                Ok(Round::Held) => return true,
                Ok(Round::HeldByOther | Round::Conflict) => {
                    if holder != self.observed.holder() {
                        holder = self.observed.holder().to_owned();
                        tracing::info!(lease = %self.lease(), %holder, "the lease is held by another candidate");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "cannot acquire the lease")
                }
            }
            let wait = self.config.retry_period.mul_f64(1.0 + JITTER_FACTOR * fastrand::f64());
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renews every `retry_period` while leading. Returns `true` when cancelled, `false` when
    /// leadership is lost: no renewal succeeded within `renew_deadline`, or the Lease shows
    /// another live holder.
    async fn renew(&mut self, shutdown: &CancellationToken) -> bool {
        let mut renewed_at = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return true,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            let deadline = renewed_at + self.config.renew_deadline;
            let round = tokio::select! {
                _ = shutdown.cancelled() => return true,
                r = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => r,
            };
            match round {
                Ok(Ok(Round::Held)) => renewed_at = Instant::now(),
                Ok(Ok(Round::HeldByOther)) => return false,
                Ok(Ok(Round::Conflict)) => {
                    tracing::info!(lease = %self.lease(), "lease renewal conflicted; retrying")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "cannot renew the lease")
                }
                Err(_elapsed) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(lease = %self.lease(), deadline = ?self.config.renew_deadline, "no renewal within the renew deadline");
                return false;
            }
        }
    }

    /// One compare-and-swap round: create the Lease if absent, otherwise take it over or renew it
    /// unless a live holder has it.
    async fn try_acquire_or_renew(&mut self) -> Result<Round> {
        let identity = self.config.lock.identity.clone();
        let seconds = self.config.lease_duration_seconds();
        let current =
            self.api.get_opt(&self.config.lock.name).await.map_err(|e| self.api_error(e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lock.name.clone()),
                    namespace: Some(self.config.lock.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(record::acquire_or_renew(None, &identity, seconds, Timestamp::now())),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.take().unwrap_or_default();
        self.observed.observe(&spec, Instant::now());
        if self.observed.held_by_other(&identity, Timestamp::now(), Instant::now()) {
            return Ok(Round::HeldByOther);
        }
        // The read's resourceVersion stays in the metadata: the replace is a compare-and-swap.
        lease.spec =
            Some(record::acquire_or_renew(Some(&spec), &identity, seconds, Timestamp::now()));
        let written =
            self.api.replace(&self.config.lock.name, &PostParams::default(), &lease).await;
        self.write(written)
    }

    /// Records the outcome of a create or replace: a conflict (409, also "already exists") means
    /// someone else wrote first.
    fn write(&mut self, written: kube::Result<Lease>) -> Result<Round> {
        match written {
            Ok(lease) => {
                self.observed.observe(&lease.spec.unwrap_or_default(), Instant::now());
                Ok(Round::Held)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Conflict),
            Err(e) => Err(self.api_error(e)),
        }
    }

    fn api_error(&self, source: kube::Error) -> Error {
        Error::Api { lease: self.lease(), source }
    }

    /// Lets go of the Lease if it is still ours, within one `retry_period` (the API server may
    /// already be shutting down; the Lease then expires on its own).
    async fn release(&mut self) {
        let identity = self.config.lock.identity.clone();
        let attempt = async {
            let Some(mut lease) =
                self.api.get_opt(&self.config.lock.name).await.map_err(|e| self.api_error(e))?
            else {
                return Ok(false);
            };
            let spec = lease.spec.take().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                return Ok(false);
            }
            lease.spec = Some(record::release(&spec, Timestamp::now()));
            self.api
                .replace(&self.config.lock.name, &PostParams::default(), &lease)
                .await
                .map_err(|e| self.api_error(e))?;
            Ok::<_, Error>(true)
        };
        match tokio::time::timeout(self.config.retry_period, attempt).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.lease(), "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "cannot release the lease")
            }
            Err(_) => tracing::warn!(lease = %self.lease(), "releasing the lease timed out"),
        }
    }
}
