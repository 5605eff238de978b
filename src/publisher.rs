//! Publishes proxy-built events in the order their responses completed.
//!
//! A broker that publishes without I/O (the in-memory one) is called on the response path itself:
//! the event is numbered as its response completes, and no other task has to be woken for it
//! (with the queue, half of the mutations woke the publisher's loop from the other one, which cost
//! more CPU than the publishing). Otherwise one task drains a bounded queue, so two mutations
//! answered one after the other are numbered in that order, and the response path only enqueues
//! (never waits on the broker). When the queue is full, the event is handed to a task of its own:
//! nothing is dropped, order is best-effort then.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admin::metrics::Metrics;
use crate::broker::Broker;
use crate::events::{EventDraft, Text};

const QUEUE: usize = 16 * 1024;

#[derive(Clone)]
pub struct Publisher {
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    /// To the task that publishes what the broker cannot publish here (`Broker::publish_here`).
    queue: mpsc::Sender<EventDraft>,
}

impl Publisher {
    pub fn spawn(broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Publisher {
        let (queue, mut rx) = mpsc::channel::<EventDraft>(QUEUE);
        let (task_broker, task_metrics) = (Arc::clone(&broker), Arc::clone(&metrics));
        tokio::spawn(async move {
            while let Some(draft) = rx.recv().await {
                publish_now(&*task_broker, &task_metrics, draft).await;
            }
        });
        Publisher {
            broker,
            metrics,
            queue,
        }
    }

    pub fn publish(&self, draft: EventDraft) {
        if self.broker.publish_here(&draft) {
            counted(&self.metrics, &draft.event_type, draft.channels.len());
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(draft)) = self.queue.try_send(draft) {
            let tx = self.queue.clone();
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
            counted(metrics, &event_type, published.len());
            Some(published)
        }
        Err(e) => {
            tracing::warn!(%event_type, error = %e, "event not published");
            None
        }
    }
}

fn counted(metrics: &Metrics, event_type: &Text, channels: usize) {
    metrics.event_published(event_type);
    tracing::debug!(%event_type, channels, "event published");
}
