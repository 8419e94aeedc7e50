//! A real S3-compatible server for backup tests: moto's `moto_server` (PyPI
//! `moto[server]`, installed by `scripts/setup.sh`) on a free loopback port,
//! killed on drop. It checks no signatures, so any credentials do.

use std::time::Duration;

use crate::{free_ports, wait_until, which};

pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` takes.
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub async fn start() -> S3Server {
        let moto = which("moto_server").expect("moto_server (pip install 'moto[server]'; scripts/setup.sh installs it)");
        let port = free_ports(1)[0];
        let child = std::process::Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        wait_until(Duration::from_secs(60), Duration::from_millis(200), "moto_server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop).map_err(|e| e.to_string())
        })
        .await;
        server
    }

    /// The `AWS_*` settings that reach this server.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket with a bare HTTP PUT.
    pub async fn create_bucket(&self, bucket: &str) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let host = self.endpoint.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect to moto");
        let req = format!("PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("answer");
        let status = answer.split_whitespace().nth(1);
        assert_eq!(status, Some("200"), "creating bucket {bucket}: {answer}");
    }
}
