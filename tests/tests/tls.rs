//! TLS end to end with real processes: a 3-node cluster with mutual TLS and
//! `--admin-allowed-cn shoal-operator` serves TLS clients; a plaintext client,
//! a client without a certificate and one whose certificate another CA signed
//! are refused at the handshake (and the refusals counted), garbage on the port
//! changes nothing; a certificate not on the admin list gets PERMISSION_DENIED
//! on `DrainStore` (counted) while its reads and writes work, and neither it
//! nor the operator's may open a Raft stream (only a store's may); a node
//! restarted with `--status-tls` serves its status port over HTTPS only; and a node's
//! certificate files rotated under a write load are served within the reload
//! period while every write is acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shoal_client::{Client, ClientError, ClientOptions, ClientTls};
use shoal_tests::pki::{self, Ca, CertFiles};
use shoal_tests::{Cluster, wait_until};
use tokio::io::AsyncWriteExt;

fn tls(ca: &Ca, cert: Option<&CertFiles>) -> ClientTls {
    ClientTls::from_files(&ca.cert, cert.map(|c| c.cert.as_path()), cert.map(|c| c.key.as_path())).expect("client TLS files")
}

fn client(cluster: &Cluster, tls: Option<ClientTls>) -> Client {
    let opts = ClientOptions { deadline: Duration::from_secs(3), attempt_timeout: Duration::from_secs(2), tls, ..ClientOptions::default() };
    Client::new(&cluster.endpoints(), opts).expect("client")
}

/// The certificate node `addr` presents to a new connection (a handshake with
/// `client` as the client certificate, trusting `ca`).
async fn served_certificate(addr: &str, ca: &Ca, client: &CertFiles) -> Result<Vec<u8>, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    pki::served_certificate(addr, "127.0.0.1", &read(&ca.cert)?, &read(&client.cert)?, &read(&client.key)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_refuses_strangers_guards_admin_and_rotates_certificates() {
    let pki = tempfile::tempdir().expect("pki dir");
    let ca = Ca::new(pki.path(), "shoal");
    let rogue_ca = Ca::new(&pki.path().join("rogue"), "rogue");
    let node = ca.node("node");
    let operator = ca.client("operator", "shoal-operator");
    let app = ca.client("app", "app");
    let rogue = rogue_ca.client("rogue", "shoal-operator");

    let mut extra: Vec<String> = Vec::new();
    extra.extend(
        [
            "--trusted-ca-file",
            ca.cert.to_str().expect("path"),
            "--client-cert-auth",
            "--admin-allowed-cn",
            "shoal-operator",
            "--tls-reload-interval-secs",
            "1",
        ]
        .map(String::from),
    );
    // The nodes read their certificate from one place, which the test rotates.
    let cert_dir = pki.path().join("current");
    std::fs::create_dir_all(&cert_dir).expect("current");
    std::fs::copy(&node.cert, cert_dir.join("cert.pem")).expect("copy");
    std::fs::copy(&node.key, cert_dir.join("key.pem")).expect("copy");
    let cert_arg = cert_dir.join("cert.pem").display().to_string();
    let key_arg = cert_dir.join("key.pem").display().to_string();
    extra.extend(["--cert-file".to_string(), cert_arg, "--key-file".to_string(), key_arg]);
    let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start_tls(3, &extra_refs, tls(&ca, Some(&operator))).await;

    // A TLS client with a certificate the CA signed: reads and writes.
    let good = client(&cluster, Some(tls(&ca, Some(&app))));
    good.put("default", b"k", b"v").await.expect("put over mutual TLS");
    assert_eq!(good.get("default", b"k").await.expect("get"), Some(b"v".to_vec()));

    // Refused at the handshake: no TLS, no client certificate, another CA's.
    let failures_before: f64 = {
        let mut sum = 0.0;
        for i in 0..3 {
            sum += cluster.metric_or_zero(i, "shoal_tls_handshake_failures_total", &[]).await;
        }
        sum
    };
    for (what, tls) in
        [("plaintext", None), ("no client certificate", Some(tls(&ca, None))), ("another CA", Some(tls(&rogue_ca, Some(&rogue))))]
    {
        let c = client(&cluster, tls);
        let err = c.get("default", b"k").await.expect_err(what);
        assert!(!matches!(err, ClientError::InvalidArgument(_)), "{what}: {err}");
    }
    // Garbage on the port: refused, and the node serves on.
    let mut raw = tokio::net::TcpStream::connect(&cluster.nodes[0].grpc).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x16\x03\x01garbage").await.expect("write garbage");
    drop(raw);
    wait_until(Duration::from_secs(10), Duration::from_millis(100), "the refused handshakes counted", || async {
        let mut sum = 0.0;
        for i in 0..3 {
            sum += cluster.metric_or_zero(i, "shoal_tls_handshake_failures_total", &[]).await;
        }
        if sum >= failures_before + 3.0 { Ok(()) } else { Err(format!("{sum} handshake failures (before: {failures_before})")) }
    })
    .await;
    assert_eq!(good.get("default", b"k").await.expect("still serving"), Some(b"v".to_vec()));

    // Raft: only a store's certificate may open a Raft stream; an
    // application's, accepted at the handshake, is refused (and counted).
    for (who, cert) in [("CN=app", &app), ("CN=shoal-operator", &operator)] {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca.cert).expect("CA")))
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(&cert.cert).expect("cert"),
                std::fs::read(&cert.key).expect("key"),
            ))
            .domain_name("localhost");
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", cluster.nodes[0].grpc)).expect("endpoint");
        let channel = endpoint.tls_config(tls).expect("TLS").connect().await.expect("the handshake passes");
        let forged = shoal_proto::RaftMessageBatch {
            messages: vec![shoal_proto::RaftMessage {
                region_id: 1,
                from_store_id: 9,
                to_store_id: cluster.store_id(0),
                ..Default::default()
            }],
        };
        let refused = shoal_proto::raft_client::RaftClient::new(channel)
            .send(futures::stream::iter(vec![forged]))
            .await
            .expect_err("a Raft stream from a client certificate");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{who}: {refused}");
        assert!(refused.message().contains(who), "{who}: {refused}");
    }
    assert!(cluster.metric_or_zero(0, "shoal_peer_denied_total", &[]).await >= 2.0, "the refusals are counted");

    // Admin: the operator's certificate may, any other may not.
    let store = cluster.store_id(2);
    let denied = good.drain_store(store).await.expect_err("a drain from CN=app");
    assert!(denied.to_string().contains("CN=app") && denied.to_string().contains("shoal-operator"), "{denied}");
    let admin = client(&cluster, Some(tls(&ca, Some(&operator))));
    let status = admin.store_status(store).await.expect("store status from CN=shoal-operator");
    assert_eq!(status.store.map(|s| s.id), Some(store));
    let mut refused = 0.0;
    for i in 0..3 {
        refused += cluster.metric_or_zero(i, "shoal_admin_denied_total", &[]).await;
    }
    assert!(refused >= 1.0, "the refusal is counted ({refused})");

    // Rotation under load: new files in place; new connections get the new
    // certificate within the reload period; every write is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, stop, acked) = (client(&cluster, Some(tls(&ca, Some(&app)))), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.put("default", format!("rot/{w}/{i}").as_bytes(), b"x").await.map_err(|e| format!("writer {w}, write {i}: {e}"))?;
                    acked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok::<u64, String>(i)
            })
        })
        .collect();
    let old = served_certificate(&cluster.nodes[0].grpc, &ca, &operator).await.expect("handshake");
    assert_eq!(old, node.der, "the node serves its first certificate");
    let rotated = ca.node("rotated");
    // Written beside, then renamed over: a reader never sees half a file.
    for (from, to) in [(&rotated.key, "key.pem"), (&rotated.cert, "cert.pem")] {
        std::fs::copy(from, cert_dir.join(format!("{to}.new"))).expect("copy new");
        std::fs::rename(cert_dir.join(format!("{to}.new")), cert_dir.join(to)).expect("rename");
    }
    wait_until(Duration::from_secs(10), Duration::from_millis(200), "the rotated certificate served", || async {
        let served = served_certificate(&cluster.nodes[0].grpc, &ca, &operator).await?;
        if served == rotated.der { Ok(()) } else { Err("still the old certificate".to_string()) }
    })
    .await;
    let at_rotation = acked.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(20), Duration::from_millis(100), "writes after the rotation", || async {
        let n = acked.load(Ordering::Relaxed);
        if n >= at_rotation + 200 { Ok(()) } else { Err(format!("{n} writes acknowledged")) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.expect("writer task").unwrap_or_else(|e| panic!("a write failed during the rotation: {e}"));
    }
    assert!(written >= 200, "{written} writes");
    assert!(cluster.metric_or_zero(0, "shoal_tls_reloads_total", &[("outcome", "ok")]).await >= 1.0, "the reload is counted");

    // The status port over TLS: node 3 restarted with --status-tls serves
    // /metrics and /readyz over HTTPS without a client certificate, and no
    // longer plain HTTP.
    let status = cluster.nodes[2].status.clone();
    assert!(cluster.terminate(2, Duration::from_secs(30)), "node 3 stops on SIGTERM");
    cluster.restart_with(2, &["--status-tls"]);
    let ca_pem = std::fs::read(&ca.cert).expect("CA");
    let (code, body) = wait_until(Duration::from_secs(30), Duration::from_millis(200), "HTTPS /readyz", || async {
        match pki::https_get(&status, "localhost", &ca_pem, "/readyz").await {
            Ok((200, body)) => Ok((200, body)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = pki::https_get(&status, "localhost", &ca_pem, "/metrics").await.expect("HTTPS /metrics");
    assert!(code == 200 && metrics.contains("shoal_tls_handshake_failures_total"), "{code}: {}", &metrics[..metrics.len().min(200)]);
    let plain = shoal_tests::try_http_get(&status, "/metrics", Duration::from_secs(5)).await;
    assert!(!matches!(plain, Ok((200, _))), "plain HTTP still served: {plain:?}");
}
