//! Alerts (issue 15): a failing scheduled job alerts once on every channel, with
//! server, database and SQL Server error number; WeCom and DingTalk get their
//! documented JSON, DingTalk's URL signed; e-mail reaches a local SMTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::{journal, runs, wait_for, Daemon};
use crate::simulator_support as sim;
use crate::sqlserver_jobs::sim_env;

/// A request the receiver got: path with query, JSON body.
pub(crate) type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP receiver on loopback answering `{"errcode":0,"errmsg":"ok"}` as the
/// robots do.
pub(crate) async fn receiver() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                store.lock().unwrap().push((path, body));
                let reply = r#"{"errcode":0,"errmsg":"ok"}"#;
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                            reply.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (port, got)
}

fn query(path: &str, key: &str) -> Option<String> {
    path.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// DingTalk's documented signature, computed here independently of pacsbak.
fn dingtalk_signature(secret: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    b64.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_alerts_once_on_every_channel() {
    let (s, env) = sim_env("full = \"*/2 * * * * *\"").await;
    let cfg = &env.cfg;
    let (port, got) = receiver().await;
    let base = format!("http://127.0.0.1:{port}");
    let toml = cfg.config().join("pacsbak.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "[daemon]\nretries = 0\n\
         [[alerts.webhook]]\nname = \"monitoring\"\nurl = \"{base}/hook\"\n\
         [[alerts.wecom]]\nname = \"it-group\"\nurl = \"{base}/wecom\"\nkey_env = \"TEST_WECOM_KEY\"\nmention = [\"13800000000\"]\n\
         [[alerts.dingtalk]]\nname = \"pacs-group\"\nurl = \"{base}/ding\"\nkey_env = \"TEST_DING_TOKEN\"\nsecret_env = \"TEST_DING_SECRET\"\n"
    ));
    std::fs::write(&toml, text).unwrap();
    // Every full fails with 3201: the backup folder cannot be opened.
    let mut c = sim::connect(s.addr).await;
    let folder = s.dir.path().join("backups");
    sim::exec(
        &mut c,
        &format!("SIMCTL FAULT unreachable_path '{}'", folder.display()),
    )
    .await;
    let d = Daemon::start(
        cfg,
        &[
            ("TEST_WECOM_KEY", "wecom-key-123"),
            ("TEST_DING_TOKEN", "ding-token-456"),
            ("TEST_DING_SECRET", "SEC-ding-secret"),
        ],
    );
    wait_for(
        cfg,
        Duration::from_secs(60),
        "three failed fulls and the alert",
        |j| {
            runs(j)
                .iter()
                .filter(|r| r.0 == "backup-full" && r.3.as_deref() == Some("failed"))
                .count()
                >= 3
                && j.iter().any(|e| e["kind"] == "alert")
        },
    );
    let (status, _) = d.terminate();
    assert!(status.success());

    let got = got.lock().unwrap().clone();
    let on = |p: &str| -> Vec<(String, Value)> {
        got.iter()
            .filter(|(path, _)| path.starts_with(p))
            .cloned()
            .collect()
    };
    // Once per channel, not once per failed run.
    let (hook, wecom, ding) = (on("/hook"), on("/wecom"), on("/ding"));
    assert_eq!((hook.len(), wecom.len(), ding.len()), (1, 1, 1), "{got:#?}");

    let alert = &hook[0].1;
    assert_eq!(alert["severity"], "failure", "{alert}");
    assert_eq!(alert["source"], "pacsbak");
    let f = &alert["failures"][0];
    assert_eq!(f["sql_error"], 3201, "{alert}");
    let context = f["context"].to_string();
    assert!(
        context.contains("SIM") && context.contains("PACS"),
        "{alert}"
    );

    // WeCom: POST …/send?key=KEY, {"msgtype":"text","text":{"content","mentioned_mobile_list"}}.
    let (path, body) = &wecom[0];
    assert_eq!(query(path, "key").as_deref(), Some("wecom-key-123"));
    assert_eq!(body["msgtype"], "text");
    let content = body["text"]["content"].as_str().unwrap();
    assert!(
        content.contains("3201") && content.contains("SIM") && content.contains("PACS"),
        "{content}"
    );
    assert_eq!(body["text"]["mentioned_mobile_list"][0], "13800000000");

    // DingTalk: ?access_token=…&timestamp=ms&sign=urlencode(base64(HMAC-SHA256)).
    let (path, body) = &ding[0];
    assert_eq!(
        query(path, "access_token").as_deref(),
        Some("ding-token-456")
    );
    let ts = query(path, "timestamp").unwrap();
    let ms: i64 = ts.parse().unwrap();
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    assert!(
        (now_ms - ms).abs() < 3_600_000,
        "DingTalk refuses timestamps over an hour off"
    );
    assert_eq!(
        query(path, "sign").unwrap(),
        dingtalk_signature("SEC-ding-secret", &ts)
    );
    assert_eq!(body["msgtype"], "text");
    assert!(body["text"]["content"].as_str().unwrap().contains("3201"));
    assert_eq!(body["at"]["isAtAll"], false);

    // The journal records the alert and its deliveries.
    let j = journal(cfg);
    let a = j.iter().find(|e| e["kind"] == "alert").unwrap();
    assert_eq!(a["status"], "ok", "{a}");
    assert_eq!(a["outcome"]["deliveries"].as_array().unwrap().len(), 3);
    // No secret in the journal.
    let all = serde_json::to_string(&j).unwrap();
    assert!(!all.contains("wecom-key-123") && !all.contains("SEC-ding-secret"));
}

#[test]
fn alert_test_reaches_a_local_smtp_server() {
    let python_ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        println!("skipped: alert_test_reaches_a_local_smtp_server: aiosmtpd is not installed");
        return;
    }
    let cfg = crate::common::TestConfig::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mailbox = cfg.path("mailbox.txt");
    let script = format!(
        r#"
import asyncio
from aiosmtpd.controller import Controller
class Keep:
    async def handle_DATA(self, server, session, envelope):
        with open({mailbox:?}, "ab") as f:
            f.write(("RCPT " + ",".join(envelope.rcpt_tos) + "\n").encode())
            f.write(envelope.content + b"\n")
        return "250 OK"
c = Controller(Keep(), hostname="127.0.0.1", port={port})
c.start()
import time
while True:
    time.sleep(1)
"#,
        mailbox = mailbox.display().to_string()
    );
    let mut smtp = std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    // Ready when it accepts connections.
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the SMTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let toml = cfg.config().join("pacsbak.toml");
    std::fs::write(
        &toml,
        format!(
            "[repository]\n[[alerts.email]]\nname = \"it-mail\"\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"pacsbak@hospital.example\"\nto = [\"pacs-admin@hospital.example\", \"it@hospital.example\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = cfg.run(&["--json", "alert", "test"]);
    let _ = smtp.kill();
    let _ = smtp.wait();
    assert_eq!(code, 0, "{out}{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["deliveries"][0]["ok"], true, "{j}");
    let mail = std::fs::read_to_string(&mailbox).unwrap();
    assert!(
        mail.contains("pacs-admin@hospital.example,it@hospital.example")
            && mail.contains("Subject: [pacsbak TEST] test message"),
        "{mail}"
    );
    // A channel that cannot be reached fails the test command, naming it.
    let (code, out, _) = cfg.run(&["alert", "test"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED  it-mail (email)"), "{out}");
}
