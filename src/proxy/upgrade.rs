//! Pass-through of the API's own upgrades (its WebSockets on paths that are not ours): once both
//! sides have switched protocols, bytes are copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub fn tunnel(client: OnUpgrade, upstream: Option<OnUpgrade>) {
    let Some(upstream) = upstream else {
        tracing::warn!("upstream switched protocols without an upgradable connection");
        return;
    };
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade pass-through failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgrade pass-through ended");
        }
    });
}
