//! A pod's `portforward` subresource over WebSocket (the `v4.channel.k8s.io`
//! binary protocol kube's client speaks): what `kubectl port-forward` and
//! `istioctl remote-clusters` use to reach istiod's debug port, and what
//! `mesh check` uses too.
//!
//! The simulator runs no containers, so only the simulated istiod answers
//! (on port 15014, from the same data the pod proxy serves:
//! `/debug/clusterz`, see `review::pod_proxy`), and a simulated proxy's
//! Envoy admin (port 15000, its config dump: `crate::proxies`); one HTTP
//! request per connection. Each port
//! has two channels, data (2i) and error (2i+1); the server first sends
//! the port number on both, as the API server does.

use crate::cluster::Cluster;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const PROTOCOL: &str = "v4.channel.k8s.io";

/// Answers the upgrade request and serves the forwarded port in a task.
/// `Err` is a plain-text failure (code, message) before the upgrade.
pub fn upgrade<B>(
    cluster: Arc<Cluster>,
    ns: &str,
    pod: &str,
    mut req: Request<Incoming>,
    empty: impl FnOnce() -> B,
) -> Result<Response<B>, (u16, String)> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .ok_or((400, "port-forward needs a WebSocket upgrade".to_string()))?
        .as_bytes()
        .to_vec();
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return Err((
            400,
            format!("kubesim speaks only {PROTOCOL}, offered {offered:?}"),
        ));
    }
    let port: u16 = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("ports="))
        .and_then(|p| p.split(['%', ',']).next())
        .and_then(|p| p.parse().ok())
        .ok_or((
            400,
            "port-forward needs exactly one port (?ports=N)".to_string(),
        ))?;
    // The pod must exist now, as the API server checks before upgrading.
    if cluster.store().get_raw("", "pods", ns, pod).is_none() {
        return Err((404, format!("pods \"{pod}\" not found")));
    }
    let (ns, pod) = (ns.to_string(), pod.to_string());
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgraded.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        serve(cluster, &ns, &pod, port, ws).await;
    });
    Ok(Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(&key))
        .header("sec-websocket-protocol", PROTOCOL)
        .body(empty())
        .expect("a valid response"))
}

async fn serve<S>(cluster: Arc<Cluster>, ns: &str, pod: &str, port: u16, mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let [lo, hi] = port.to_le_bytes();
    for ch in [0u8, 1] {
        if ws.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
            return;
        }
    }
    // One HTTP request on the data channel: read up to its blank line.
    let mut request = Vec::new();
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&0) => {
                request.extend_from_slice(&b[1..])
            }
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
            _ => return,
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let pod_port = format!("{pod}:{port}");
    // A proxy's Envoy admin (`crate::proxies`), else istiod's debug port.
    let envoy = (port == 15000 && segs.first().is_some_and(|s| s.starts_with("config_dump")))
        .then(|| {
            cluster
                .store()
                .get_raw("", "pods", ns, pod)
                .and_then(crate::proxies::config_dump)
        })
        .flatten();
    let answer = match envoy {
        Some(dump) => Ok(dump),
        None => crate::review::pod_proxy(&cluster, ns, &pod_port, &segs),
    };
    let frame = match answer {
        Ok(v) => {
            let body = serde_json::to_vec(&v).unwrap_or_default();
            let mut f = vec![0u8];
            f.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            f.extend_from_slice(&body);
            f
        }
        // Nothing listens there: the error channel says so, as the
        // kubelet does for a port nobody serves.
        Err((_, message)) => {
            let mut f = vec![1u8];
            f.extend_from_slice(
                format!("error forwarding port {port} to pod {pod}: {message}").as_bytes(),
            );
            f
        }
    };
    let _ = ws.send(Message::Binary(Bytes::from(frame))).await;
    let _ = ws.close(None).await;
}

/// The empty body of a 101 answer, for the server's body type.
pub fn empty_body() -> http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> {
    http_body_util::Empty::<Bytes>::new().boxed()
}
