//! A private ClickHouse server for one test, on free loopback ports with its data in a directory
//! of the test's: for tests that stop and start the server (an outage mid-stream), which must not
//! touch the shared development server other tests use. The same Debian `clickhouse-server`
//! and the same configuration template as `deploy/dev/services.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use varde_store::clickhouse::ClickHouseSettings;

use crate::process::Guard;
use crate::{free_port, workspace_root};

/// A `clickhouse-server` of this test's own; killed when dropped.
pub struct PrivateClickHouse {
    dir: PathBuf,
    http_port: u16,
    server: Option<Guard>,
}

impl PrivateClickHouse {
    /// Renders the configuration into `dir` and starts the server; returns once it answers.
    pub fn start(dir: &Path) -> PrivateClickHouse {
        for sub in [
            "data/tmp",
            "data/user_files",
            "data/format_schemas",
            "conf",
            "logs",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("clickhouse directories");
        }
        let (http_port, tcp_port) = (free_port(), free_port());
        let root = workspace_root();
        let template = std::fs::read_to_string(root.join("deploy/dev/clickhouse-config.xml.tmpl"))
            .expect("deploy/dev/clickhouse-config.xml.tmpl");
        let config = template
            .replace("@DATA@", &dir.join("data").display().to_string())
            .replace("@LOGS@", &dir.join("logs").display().to_string())
            .replace("@CONF@", &dir.join("conf").display().to_string())
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string());
        std::fs::write(dir.join("conf/config.xml"), config).expect("write config.xml");
        std::fs::copy(
            root.join("deploy/dev/clickhouse-users.xml"),
            dir.join("conf/users.xml"),
        )
        .expect("copy users.xml");
        let mut ch = PrivateClickHouse {
            dir: dir.to_owned(),
            http_port,
            server: None,
        };
        ch.resume();
        ch
    }

    /// Settings for database `database` on this server.
    pub fn settings(&self, database: &str) -> ClickHouseSettings {
        ClickHouseSettings::new(format!("http://127.0.0.1:{}", self.http_port), database)
    }

    fn answers(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok_and(
            |mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut body = String::new();
                s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok()
                    && s.read_to_string(&mut body).is_ok()
                    && body.ends_with("Ok.\n")
            },
        )
    }

    /// Stops the server as an operator would (SIGTERM), and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &guard.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if matches!(guard.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            guard.kill9();
        }
    }

    /// Starts the server (again) on the same ports and data; returns once it answers.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("logs/stdout.log")).expect("server log");
        let child = Command::new("clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("conf/config.xml").display()
            ))
            .current_dir(self.dir.join("data"))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("clickhouse-server on PATH (deploy/dev/services.sh up installs it)");
        self.server = Some(Guard(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            let exited = self
                .server
                .as_mut()
                .is_some_and(|g| matches!(g.0.try_wait(), Ok(Some(_))));
            assert!(
                !exited && Instant::now() < deadline,
                "private clickhouse-server did not start; see {}",
                self.dir.join("logs").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
