//! Publishes proxy-built events in the order their responses completed.
//!
//! One task drains a bounded queue, so two mutations answered one after the other are numbered in
//! that order, and the response path only enqueues (never waits on the broker). When the queue is
//! full, the event is handed to a task of its own: nothing is dropped, order is best-effort then.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admin::metrics::Metrics;
use crate::broker::Broker;
use crate::events::EventDraft;

const QUEUE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<EventDraft>,
}

impl Publisher {
    pub fn spawn(broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Publisher {
        let (tx, mut rx) = mpsc::channel::<EventDraft>(QUEUE);
        tokio::spawn(async move {
            while let Some(draft) = rx.recv().await {
                publish_now(&*broker, &metrics, draft).await;
            }
        });
        Publisher { tx }
    }

    pub fn publish(&self, draft: EventDraft) {
        if let Err(mpsc::error::TrySendError::Full(draft)) = self.tx.try_send(draft) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(draft).await;
            });
        }
    }
}

/// Publishes and counts one draft; failures are logged (the broker reconnects by itself).
pub async fn publish_now(
    broker: &dyn Broker,
    metrics: &Metrics,
    draft: EventDraft,
) -> Option<Vec<crate::broker::Published>> {
    let event_type = draft.event_type.clone();
    match broker.publish(draft).await {
        Ok(published) => {
            metrics.event_published(&event_type);
            tracing::debug!(event_type, channels = published.len(), "event published");
            Some(published)
        }
        Err(e) => {
            tracing::warn!(event_type, error = %e, "event not published");
            None
        }
    }
}
