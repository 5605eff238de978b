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

use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::admin::metrics::Metrics;
use crate::broker::Broker;
use crate::events::{EventDraft, Text};

const QUEUE: usize = 16 * 1024;

#[derive(Clone)]
pub struct Publisher {
    route: Route,
}

#[derive(Clone)]
enum Route {
    AtOnce(Arc<dyn Broker>, Arc<Metrics>),
    Queue(mpsc::Sender<EventDraft>),
}

impl Publisher {
    pub fn spawn(broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Publisher {
        if broker.publishes_at_once() {
            return Publisher {
                route: Route::AtOnce(broker, metrics),
            };
        }
        let (tx, mut rx) = mpsc::channel::<EventDraft>(QUEUE);
        tokio::spawn(async move {
            while let Some(draft) = rx.recv().await {
                publish_now(&*broker, &metrics, draft).await;
            }
        });
        Publisher {
            route: Route::Queue(tx),
        }
    }

    pub fn publish(&self, draft: EventDraft) {
        let tx = match &self.route {
            Route::Queue(tx) => tx,
            Route::AtOnce(broker, metrics) => {
                if broker.publish_here(&draft) {
                    counted(metrics, &draft.event_type, draft.channels.len());
                } else {
                    // Ready at once by the broker's promise; polled once, never awaited.
                    let _ = publish_now(&**broker, metrics, draft).now_or_never();
                }
                return;
            }
        };
        if let Err(mpsc::error::TrySendError::Full(draft)) = tx.try_send(draft) {
            let tx = tx.clone();
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
