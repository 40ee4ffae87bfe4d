//! An HTTP GET to a pod's port through the API server's port-forward
//! (the pods' `portforward` subresource over WebSocket), as `istioctl` and
//! `kubectl port-forward` reach a pod: bounded in time and size.

use crate::cluster::Connection;

/// How long istiod may take to answer through the port-forward: a pod the
/// cluster cannot reach hangs until then.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest answer read from istiod's debug endpoint.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A GET of `path` on `port` of `pod`, through a port-forward (the pods'
/// `portforward` subresource), as `istioctl remote-clusters` asks istiod.
/// Not the API server's pod proxy: istiod answers its debug endpoints only
/// to requests from localhost or authenticated as a workload, and the proxy
/// strips the caller's credentials, so through it a real istiod says 401;
/// a port-forward arrives from localhost inside the pod, as the kubelet
/// connects.
pub async fn get(
    conn: &Connection,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    use http_body_util::BodyExt;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(conn.client.clone(), namespace);
    let ask = async {
        let mut forward = pods
            .portforward(pod, &[port])
            .await
            .map_err(|e| format!("port-forward refused: {e}"))?;
        let stream = forward
            .take_stream(port)
            .ok_or("port-forward gave no stream")?;
        let error = forward.take_error(port);
        let asked = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let req = http::Request::get(path)
                .header("host", format!("localhost:{port}"))
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let answer = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer (at most {} MiB): {e}", MAX_ANSWER >> 20))?
                .to_bytes();
            let body = String::from_utf8_lossy(&body).to_string();
            if !status.is_success() {
                return Err(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    crate::rendered::shown(
                        body.trim().chars().take(200).collect::<String>().as_str()
                    )
                ));
            }
            Ok(body)
        };
        let answer = asked.await;
        forward.abort();
        match answer {
            Ok(a) => Ok(a),
            // What the far side said, when it said something (nothing
            // listens on the port, say).
            Err(e) => match error {
                Some(err) => {
                    match tokio::time::timeout(std::time::Duration::from_millis(200), err).await {
                        Ok(Some(said)) => Err(said),
                        _ => Err(e),
                    }
                }
                None => Err(e),
            },
        }
    };
    match tokio::time::timeout(ASK_TIMEOUT, ask).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s through the port-forward",
            ASK_TIMEOUT.as_secs()
        )),
    }
}
