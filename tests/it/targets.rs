//! Real offsite targets: S3 (moto_server, open or checking signatures and IAM
//! policies), SFTP (a private OpenSSH sshd), WebDAV (`rclone serve webdav`), all
//! started here on loopback ports the tests pick and stopped at the end; faults
//! through a TCP proxy the test can cut; copies.
//!
//! A server binary that is missing prints `skipped:` (scripts/test.sh installs them).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{pseudo_random, tree_contents, TestConfig};

/// Variables this machine sets that would point clients at a CA bundle or proxy.
const SCRUB_ENV: &[&str] = &[
    "AWS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
];

const SECRET: &str = "s3cr3t-do-not-print-4711";

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrubbed(cmd: &mut Command) -> &mut Command {
    for v in SCRUB_ENV {
        cmd.env_remove(v);
    }
    cmd
}

fn start_moto() -> Option<(Server, u16)> {
    if !have("moto_server") {
        println!("skipped: moto_server is not installed");
        return None;
    }
    let port = free_port();
    let child =
        scrubbed(Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
    let s = Server(child);
    wait_port(port);
    Some((s, port))
}

fn http(port: u16, req: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn create_bucket(port: u16, bucket: &str) {
    let r = http(port, &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

impl TestConfig {
    fn add_target(&self, name: &str, toml: &str) {
        std::fs::write(
            self.config().join(format!("storage-targets/{name}.toml")),
            toml,
        )
        .unwrap();
    }

    fn s3_target(&self, name: &str, port: u16, bucket: &str, extra: &str) {
        self.s3_target_keyed(name, port, bucket, "testing", SECRET, extra);
    }

    /// An s3 target whose secrets file holds `key_id` and `secret`.
    fn s3_target_keyed(
        &self,
        name: &str,
        port: u16,
        bucket: &str,
        key_id: &str,
        secret: &str,
        extra: &str,
    ) {
        let secrets = self.config().join(format!("{name}.secrets"));
        std::fs::write(
            &secrets,
            format!("access_key_id={key_id}\nsecret_access_key={secret}\n"),
        )
        .unwrap();
        set_private(&secrets);
        self.add_target(name, &format!(
            "service = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nroot = \"repo\"\nsecrets_file = \"{name}.secrets\"\n{extra}"
        ));
    }

    fn run_scrubbed(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = self.cmd(args);
        scrubbed(&mut c).current_dir(self.tmp.path());
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn ok_scrubbed(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run_scrubbed(args);
        self.assert_hidden(&out);
        self.assert_hidden(&err);
        assert_eq!(code, 0, "pacsbak {args:?} failed:\n{out}\n{err}");
        out
    }

    /// Panics (without echoing the secret) when `text` holds `SECRET` or any secret
    /// value of the config folder's `*.secrets` files.
    fn assert_hidden(&self, text: &str) {
        let mut secrets = vec![SECRET.to_string()];
        for entry in std::fs::read_dir(self.config()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "secrets") {
                let body = std::fs::read_to_string(&path).unwrap();
                secrets.extend(body.lines().filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.contains("secret") || k.contains("password")).then(|| v.trim().to_string())
                }));
            }
        }
        for (i, s) in secrets.iter().enumerate() {
            assert!(
                s.is_empty() || !text.contains(s.as_str()),
                "secret #{i} was printed (output withheld)"
            );
        }
    }
}

#[cfg(unix)]
fn set_private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}
#[cfg(not(unix))]
fn set_private(_p: &Path) {}

fn sample_tree(t: &TestConfig) -> PathBuf {
    let src = t.path("src");
    std::fs::create_dir_all(src.join("PACS/config")).unwrap();
    std::fs::write(src.join("PACS/config/app.ini"), b"[db]\nserver=sql01\n").unwrap();
    std::fs::write(src.join("PACS/server.bin"), pseudo_random(3 << 20, 7)).unwrap();
    let mut big = pseudo_random(20 << 20, 8);
    big.extend(std::iter::repeat_n(0x5au8, 10 << 20));
    std::fs::write(src.join("PACS.bak"), big).unwrap();
    src
}

/// backup → snapshots → restore → verify --read-data against a target.
fn full_cycle(t: &TestConfig, target: &str) {
    let src = sample_tree(t);
    t.ok_scrubbed(&["repo", "init", "--target", target]);
    let out = t.ok_scrubbed(&["target", "check", target, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    t.ok_scrubbed(&["backup", "files", "--target", target, src.to_str().unwrap()]);
    t.ok_scrubbed(&["backup", "files", "--target", target, src.to_str().unwrap()]);
    let snaps: serde_json::Value =
        serde_json::from_str(&t.ok_scrubbed(&["snapshots", "--target", target, "--json"])).unwrap();
    assert_eq!(
        snaps["snapshots"].as_array().map(|a| a.len()),
        Some(2),
        "{snaps}"
    );
    let dest = t.path("restored");
    t.ok_scrubbed(&[
        "restore",
        "files",
        "latest",
        "--target",
        target,
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(tree_contents(&dest.join("src")), tree_contents(&src));
    t.ok_scrubbed(&["verify", "--target", target, "--read-data"]);
}

#[test]
fn s3_full_cycle_on_moto() {
    let Some((_moto, port)) = start_moto() else {
        return;
    };
    create_bucket(port, "pacs");
    let t = TestConfig::new();
    t.s3_target("s3", port, "pacs", "[limits]\nconnections = 3\n");
    full_cycle(&t, "s3");
}

#[test]
fn s3_failures_name_the_target_and_hide_the_secret() {
    let Some((_moto, port)) = start_moto() else {
        return;
    };
    let t = TestConfig::new();
    t.s3_target(
        "nobucket",
        port,
        "missing-bucket",
        "[limits]\nretries = 1\nretry_base_ms = 10\n",
    );
    let (code, out, err) = t.run_scrubbed(&["target", "check", "nobucket"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("bucket does not exist"), "{out}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    let (code, _, err) = t.run_scrubbed(&["repo", "init", "--target", "nobucket"]);
    assert_eq!(code, 2);
    assert!(err.contains("nobucket") && !err.contains(SECRET), "{err}");

    let dead = free_port();
    t.s3_target(
        "down",
        dead,
        "pacs",
        "[limits]\nretries = 1\nretry_base_ms = 10\n",
    );
    let (code, out, err) = t.run_scrubbed(&["target", "check", "down"]);
    assert_eq!(code, 1);
    assert!(out.contains("connection refused"), "{out}{err}");
    let (code, _, err) = t.run_scrubbed(&["repo", "init", "--target", "down"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("target: down") && err.contains("connection refused") && !err.contains(SECRET),
        "{err}"
    );

    t.add_target("nodns", "service = \"s3\"\nendpoint = \"http://no-such-host.invalid:9000\"\nbucket = \"b\"\naccess_key_id_env = \"PACSBAK_TEST_KEY\"\nsecret_access_key_env = \"PACSBAK_TEST_SECRET\"\n[limits]\nretries = 0\n");
    let (code, out, _) = {
        let mut c = t.cmd(&["target", "check", "nodns"]);
        scrubbed(&mut c)
            .env("PACSBAK_TEST_KEY", "k")
            .env("PACSBAK_TEST_SECRET", SECRET);
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    assert_eq!(code, 1);
    assert!(out.contains("DNS") && !out.contains(SECRET), "{out}");
    // A named variable that is unset is a configuration error naming it.
    let (code, _, err) = t.run_scrubbed(&["target", "check", "nodns"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("PACSBAK_TEST_KEY") && err.contains("nodns"),
        "{err}"
    );
}

/// Run as `python3 -c MOTO_WITH_SIGV4_QUERY_FIX -H HOST -p PORT`: moto_server with one
/// fix. moto (seen with 5.2.1; getmoto/moto#5948, its fix #5949 never merged) checks a
/// signature against werkzeug's decoded URL, so `?prefix=repo/keys/` enters its
/// canonical request with a bare `/` where SigV4, AWS and clients (boto3 too) use
/// `%2F`: every signed list with a `/` in the prefix fails SignatureDoesNotMatch even
/// with the right key, and pacsbak always lists such prefixes. The fix re-encodes the
/// query as SigV4 says before moto computes (a no-op on a query already encoded); the
/// signature check and the IAM policy evaluation are moto's own.
const MOTO_WITH_SIGV4_QUERY_FIX: &str = r#"
import sys
from urllib.parse import quote, unquote
import moto.iam.access_control as ac
original = ac.IAMRequestBase._create_aws_request
def create_aws_request(self):
    path, _, query = self._path.partition("?")
    if query:
        enc = lambda s: quote(unquote(s), safe="-_.~")
        pairs = (p.partition("=") for p in query.split("&") if p)
        self._path = path + "?" + "&".join(enc(k) + "=" + enc(v) for k, _, v in pairs)
    return original(self)
ac.IAMRequestBase._create_aws_request = create_aws_request
from moto.server import main
main(sys.argv[1:])
"#;

/// An IAM user's access key, created on the server.
struct IamKey {
    id: String,
    secret: String,
}

/// `application/x-www-form-urlencoded` value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).expect(tag) + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>")).expect(tag);
    xml[start..end].to_string()
}

/// One IAM query-API call, sent while moto still takes unauthenticated requests. moto
/// serves every service on one port and routes by the credential scope of the
/// Authorization header (`.../iam/aws4_request`); the signature is not checked yet.
fn iam_call(port: u16, action: &str, params: &[(&str, &str)]) -> String {
    let mut body = format!("Action={action}&Version=2010-05-08");
    for (k, v) in params {
        body.push_str(&format!("&{k}={}", form_encode(v)));
    }
    let r = http(port, &format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "IAM {action}: {r}");
    r
}

/// moto_server that enforces SigV4 signatures and IAM policies, its request log in
/// `log`. The first requests are unauthenticated (`INITIAL_NO_AUTH_ACTION_COUNT`, one
/// per call: CreateBucket `bucket`, then per user CreateUser, CreateAccessKey and
/// PutUserPolicy with the given policy document); every later request is checked.
fn start_moto_iam(
    log: &Path,
    bucket: &str,
    users: &[(&str, &str)],
) -> Option<(Server, u16, Vec<IamKey>)> {
    if !have("moto_server") {
        println!("skipped: moto_server is not installed");
        return None;
    }
    let setup_calls = 1 + 3 * users.len();
    let port = free_port();
    let child = scrubbed(
        Command::new("python3")
            .args(["-c", MOTO_WITH_SIGV4_QUERY_FIX, "-H", "127.0.0.1", "-p"])
            .arg(port.to_string()),
    )
    .env("INITIAL_NO_AUTH_ACTION_COUNT", setup_calls.to_string())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(log).unwrap())
    .spawn()
    .ok()?;
    let mut server = Server(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(_)) = server.0.try_wait() {
            println!(
                "skipped: moto_server is installed but python3 cannot run moto.server:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return None;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    create_bucket(port, bucket);
    let mut keys = Vec::new();
    for (user, policy) in users {
        iam_call(port, "CreateUser", &[("UserName", user)]);
        let r = iam_call(port, "CreateAccessKey", &[("UserName", user)]);
        keys.push(IamKey {
            id: xml_text(&r, "AccessKeyId"),
            secret: xml_text(&r, "SecretAccessKey"),
        });
        iam_call(
            port,
            "PutUserPolicy",
            &[
                ("UserName", user),
                ("PolicyName", "pacsbak"),
                ("PolicyDocument", policy),
            ],
        );
    }
    // From here on a request without a valid signature is refused.
    let r = http(
        port,
        &format!("GET /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        !r.starts_with("HTTP/1.1 2"),
        "moto still answers unsigned requests: {r}"
    );
    Some((server, port, keys))
}

/// Everything on `bucket`: what a maintenance host (or a plain backup account) has.
fn full_access_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
    )
}

/// The append-only policy of docs/operations.md ("Append-only credentials"), for
/// `bucket` with pacsbak's `root` prefix.
fn append_only_policy(bucket: &str, root: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{
      "Sid": "PacsbakList",
      "Effect": "Allow",
      "Action": ["s3:ListBucket"],
      "Resource": "arn:aws:s3:::{bucket}"
    }},
    {{
      "Sid": "PacsbakReadWrite",
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
      "Resource": "arn:aws:s3:::{bucket}/{root}/*"
    }},
    {{
      "Sid": "PacsbakNeverDeletes",
      "Effect": "Deny",
      "Action": [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:DeleteBucket"
      ],
      "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]
    }}
  ]
}}"#
    )
}

/// Wrong credentials against a server that checks them (moto with IAM on, see
/// `start_moto_iam`): a wrong secret and an unknown access key are each an
/// authentication failure in `target check` (exit 1) and `repo init` (exit 2), naming
/// the target and never printing a secret; the right key runs the whole cycle.
#[test]
fn s3_wrong_credentials_are_refused_by_a_checking_server() {
    let t = TestConfig::new();
    let Some((_moto, port, keys)) = start_moto_iam(
        &t.path("moto.log"),
        "pacs",
        &[("pacsbak", &full_access_policy("pacs"))],
    ) else {
        return;
    };
    let key = &keys[0];
    let quick = "[limits]\nretries = 1\nretry_base_ms = 10\n";
    t.s3_target_keyed("wrongsecret", port, "pacs", &key.id, SECRET, quick);
    t.s3_target_keyed(
        "unknownkey",
        port,
        "pacs",
        "AKIAPACSBAKUNKNOWN00",
        &key.secret,
        quick,
    );
    for (name, code_from_server) in [
        ("wrongsecret", "SignatureDoesNotMatch"),
        ("unknownkey", "InvalidAccessKeyId"),
    ] {
        let (code, out, err) = t.run_scrubbed(&["target", "check", name]);
        t.assert_hidden(&out);
        t.assert_hidden(&err);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains(&format!(
                "target {name} is NOT usable: storage list failed: authentication failed"
            )) && out.contains(code_from_server),
            "{out}"
        );
        let (code, out, err) = t.run_scrubbed(&["repo", "init", "--target", name]);
        t.assert_hidden(&out);
        t.assert_hidden(&err);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains(&format!("target: {name}"))
                && err.contains("authentication failed")
                && err.contains(code_from_server),
            "{err}"
        );
    }
    t.s3_target_keyed(
        "s3",
        port,
        "pacs",
        &key.id,
        &key.secret,
        "[limits]\nconnections = 3\n",
    );
    full_cycle(&t, "s3");
}

/// The request lines of moto's log that ask to delete: DeleteObject, DeleteObjects
/// (`POST ?delete`), AbortMultipartUpload.
fn delete_requests(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("\"DELETE ") || l.contains("?delete"))
        .collect()
}

/// Append-only for real: an IAM user with the append-only policy of
/// docs/operations.md (list, get, put; deletes denied) backs up, verifies with
/// `--read-data` and restores through a target marked `append_only = true`. moto's
/// request log shows pacsbak never asked to delete and wrote every object name once
/// (so bucket versioning costs nothing). The same credentials on a target not marked
/// append-only prove the server enforces the policy: `target check` fails at its
/// delete step saying so, and a direct delete of a pack is refused with AccessDenied
/// and leaves the pack in place.
#[test]
fn s3_append_only_user_backs_up_verifies_and_restores_without_deleting() {
    let t = TestConfig::new();
    let log = t.path("moto.log");
    let Some((_moto, port, keys)) = start_moto_iam(
        &log,
        "pacs",
        &[("pacsbak-ao", &append_only_policy("pacs", "repo"))],
    ) else {
        return;
    };
    let key = &keys[0];
    t.s3_target_keyed(
        "ao",
        port,
        "pacs",
        &key.id,
        &key.secret,
        "append_only = true\n",
    );
    let src = sample_tree(&t);
    t.ok_scrubbed(&["repo", "init", "--target", "ao"]);
    let out = t.ok_scrubbed(&["target", "check", "ao"]);
    assert!(out.contains("target ao is usable"), "{out}");
    t.ok_scrubbed(&["backup", "files", "--target", "ao", src.to_str().unwrap()]);
    std::fs::write(src.join("PACS/config/app.ini"), b"[db]\nserver=sql02\n").unwrap();
    t.ok_scrubbed(&["backup", "files", "--target", "ao", src.to_str().unwrap()]);
    t.ok_scrubbed(&["verify", "--target", "ao", "--read-data"]);
    t.ok_scrubbed(&["verify", "--target", "ao", "--read-data"]);
    let dest = t.path("restored");
    t.ok_scrubbed(&[
        "restore",
        "files",
        "latest",
        "--target",
        "ao",
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(tree_contents(&dest.join("src")), tree_contents(&src));

    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(delete_requests(&text), Vec::<&str>::new());
    // Objects are created by a PUT without a query or a multipart completion.
    let mut written = std::collections::BTreeMap::<&str, usize>::new();
    for l in text.lines() {
        let Some(req) = l.split('"').nth(1) else {
            continue;
        };
        let mut parts = req.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (object, query) = target.split_once('?').unwrap_or((target, ""));
        if (method == "PUT" && query.is_empty())
            || (method == "POST" && query.starts_with("uploadId="))
        {
            *written.entry(object).or_default() += 1;
        }
    }
    assert!(written.keys().any(|k| k.starts_with("/pacs/repo/data/")));
    let twice: Vec<_> = written.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "objects written more than once: {twice:?}"
    );

    // The same credentials without append_only: the server itself refuses deletes.
    t.s3_target_keyed(
        "ao-raw",
        port,
        "pacs",
        &key.id,
        &key.secret,
        "[limits]\nretries = 0\n",
    );
    let (code, out, err) = t.run_scrubbed(&["target", "check", "ao-raw"]);
    t.assert_hidden(&out);
    t.assert_hidden(&err);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("delete  FAILED")
            && out
                .contains("target ao-raw is NOT usable: storage delete failed: permission denied")
            && out.contains("AccessDenied")
            && out.contains("set append_only = true"),
        "{out}"
    );
    let cfg = pacsbak::config::ConfigDir::load(&t.config()).unwrap();
    let storage = pacsbak::storage::open_target(cfg.target(Some("ao-raw")).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let packs = storage.list("data/").await.unwrap();
        let pack = &packs.first().expect("a pack").path;
        let e = storage.delete(pack).await.unwrap_err();
        assert_eq!(e.kind(), pacsbak::ErrorKind::Auth, "{e}");
        let shown = e.to_string();
        t.assert_hidden(&shown);
        assert!(
            shown.contains("AccessDenied") && shown.contains("target: ao-raw"),
            "{shown}"
        );
        assert!(
            storage.size(pack).await.unwrap().is_some(),
            "{pack} is gone"
        );
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let deletes = delete_requests(&text);
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes.iter().all(|l| l.contains("\" 403 ")), "{deletes:?}");
}

/// A TCP proxy whose upstream link the test can cut and restore, counting bytes
/// sent towards the server. moto keeps its state in memory, so "killing the server"
/// is done here, on the network path, where the client sees exactly what it would.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, s, lv) = (up.clone(), sent.clone(), live.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                if !u.load(Ordering::SeqCst) {
                    drop(c);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                lv.lock().unwrap().push(c.try_clone().unwrap());
                lv.lock().unwrap().push(server.try_clone().unwrap());
                let (mut c2, mut s2) = (c.try_clone().unwrap(), server.try_clone().unwrap());
                let counter = s.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut c = c;
                    let mut server = server;
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::SeqCst);
                                if server.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            up,
            sent,
            live,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The bandwidth window on a real transfer: a backup of 60 MB of random bytes to moto
/// through a counting proxy, limited to 2 MB/s all day, takes about 30 s, and the
/// bytes on the wire over the whole transfer come to within 10% of the limit. The
/// limiter paces each object before it is sent (an object goes at line speed), so
/// the limit is an average over objects, measured here over the whole run; its
/// logic is also tested in paused time in src/storage/throttle.rs.
#[test]
fn bandwidth_limit_holds_over_a_30_second_transfer() {
    let t = TestConfig::new();
    let Some((_moto, proxy)) = s3_behind_proxy(
        &t,
        "slow",
        "[limits]\nconnections = 2\n[[limits.bandwidth]]\nfrom = \"00:00\"\nto = \"24:00\"\nlimit = \"2MB/s\"\n",
    ) else {
        return;
    };
    // Random bytes do not compress: 60 MB is 30 s at 2 MB/s.
    let big = t.path("big.bak");
    std::fs::write(&big, pseudo_random(60_000_000, 5)).unwrap();
    let before = proxy.sent.load(Ordering::SeqCst);
    let started = Instant::now();
    let (code, out, err) =
        t.run_scrubbed(&["backup", "files", "--target", "slow", big.to_str().unwrap()]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}{err}");
    let sent = proxy.sent.load(Ordering::SeqCst) - before;
    assert!(sent > 60_000_000, "{sent} bytes on the wire");
    let rate = sent as f64 / elapsed;
    println!("bandwidth on the wire: {rate:.0} B/s over {elapsed:.1} s (limit 2000000)");
    // The limit holds: never more than 10% over it. Under it is allowed down to 75%:
    // other tests share the two cores (the daemon's run hundreds of jobs), and a
    // starved process sending less is not the limiter's doing.
    assert!(
        (2e6 * 0.75..=2e6 * 1.10).contains(&rate),
        "{rate:.0} B/s over {elapsed:.1} s against a 2 MB/s limit"
    );
}

/// moto with bucket `pacs`, reached through a counting proxy as target `name` (with
/// `limits`), its repository initialised; `None` when moto_server is not installed.
fn s3_behind_proxy(t: &TestConfig, name: &str, limits: &str) -> Option<(Server, Proxy)> {
    let (moto, port) = start_moto()?;
    create_bucket(port, "pacs");
    let proxy = Proxy::start(port);
    t.s3_target(name, proxy.port, "pacs", limits);
    t.ok_scrubbed(&["repo", "init", "--target", name]);
    Some((moto, proxy))
}

fn stored_bytes(t: &TestConfig, target: &str) -> u64 {
    let cfg = pacsbak::config::ConfigDir::load(&t.config()).unwrap();
    let storage = pacsbak::storage::open_target(cfg.target(Some(target)).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut n = 0;
        for p in ["data/", "index/", "snapshots/"] {
            n += storage
                .list(p)
                .await
                .unwrap()
                .iter()
                .map(|o| o.size)
                .sum::<u64>();
        }
        n
    })
}

#[test]
fn s3_server_lost_mid_upload_then_resumed() {
    let t = TestConfig::new();
    let Some((_moto, proxy)) = s3_behind_proxy(
        &t,
        "s3",
        "[limits]\nconnections = 2\nretries = 2\nretry_base_ms = 50\n",
    ) else {
        return;
    };
    let file = t.path("PACS_FULL.bak");
    std::fs::write(&file, pseudo_random(160 << 20, 42)).unwrap();

    let mut c = t.cmd(&["backup", "files", "--target", "s3", file.to_str().unwrap()]);
    scrubbed(&mut c)
        .current_dir(t.tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let start = Instant::now();
    while proxy.sent.load(Ordering::SeqCst) < 70 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "upload did not progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.cut();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the run must fail: {err}");
    assert!(err.contains("target: s3") && !err.contains(SECRET), "{err}");
    proxy.restore();

    let (code, out, err) = t.run_scrubbed(&["verify", "--target", "s3"]);
    assert_eq!(code, 0, "repository must still verify:\n{out}\n{err}");
    let before = stored_bytes(&t, "s3");
    assert!(
        before > 40 << 20,
        "some packs were stored before the cut: {before}"
    );

    proxy.sent.store(0, Ordering::SeqCst);
    let out = t.ok_scrubbed(&["backup", "files", "--target", "s3", file.to_str().unwrap()]);
    assert!(out.contains("reused"), "{out}");
    let sent = proxy.sent.load(Ordering::SeqCst);
    let after = stored_bytes(&t, "s3");
    let missing = after - before;
    println!("stored before {before}, missing {missing}, sent {sent}");
    assert!(
        (sent as f64) <= missing as f64 * 1.10,
        "sent {sent} for {missing} missing"
    );
    let dest = t.path("restored");
    t.ok_scrubbed(&[
        "restore",
        "files",
        "latest",
        "--target",
        "s3",
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(dest.join("PACS_FULL.bak")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    t.ok_scrubbed(&["verify", "--target", "s3", "--read-data"]);
}

/// A private sshd: its own config, host key and authorized key, on a loopback port.
fn start_sshd(dir: &Path) -> Option<(Server, u16, PathBuf, String)> {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(sshd) = sshd else {
        println!("skipped: sshd is not installed (apt package openssh-server)");
        return None;
    };
    std::fs::create_dir_all(dir).unwrap();
    // sshd started as root wants its privilege-separation folder.
    let _ = std::fs::create_dir_all("/run/sshd");
    for k in ["host", "client"] {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(k))
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let conf = dir.join("sshd_config");
    std::fs::write(&conf, format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
        d = dir.display()
    )).unwrap();
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let s = Server(child);
    wait_port(port);
    Some((s, port, dir.join("client"), user))
}

#[test]
fn sftp_full_cycle_on_private_sshd() {
    let t = TestConfig::new();
    let Some((_sshd, port, key, user)) = start_sshd(&t.path("ssh")) else {
        return;
    };
    let root = t.path("sftp-root");
    std::fs::create_dir_all(&root).unwrap();
    t.add_target("sftp", &format!(
        "service = \"sftp\"\nendpoint = \"ssh://{user}@127.0.0.1:{port}\"\nroot = \"{}\"\nkey_file = \"{}\"\nknown_hosts = \"accept\"\n",
        root.display(), key.display()
    ));
    full_cycle(&t, "sftp");
    // Nothing half-written is ever visible under a final name.
    assert!(
        std::fs::read_dir(root.join(".tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );

    // A key the server does not know: an authentication failure naming the target.
    let (other, _) = (t.path("ssh/other"), ());
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    t.add_target("badkey", &format!(
        "service = \"sftp\"\nendpoint = \"ssh://{user}@127.0.0.1:{port}\"\nroot = \"{}\"\nkey_file = \"{}\"\nknown_hosts = \"accept\"\n[limits]\nretries = 0\n",
        root.display(), other.display()
    ));
    let (code, out, err) = t.run_scrubbed(&["target", "check", "badkey"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("target badkey") && out.contains("NOT usable"),
        "{out}"
    );
}

#[test]
fn webdav_full_cycle_on_rclone() {
    if !have("rclone") {
        println!("skipped: rclone is not installed (apt package rclone)");
        return;
    }
    let t = TestConfig::new();
    let dir = t.path("dav");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = scrubbed(
        Command::new("rclone")
            .args(["serve", "webdav", "--addr", &format!("127.0.0.1:{port}")])
            .arg(&dir),
    )
    .env("RCLONE_CONFIG", t.path("rclone.conf"))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _server = Server(child);
    wait_port(port);
    t.add_target(
        "dav",
        &format!(
            "service = \"webdav\"\nendpoint = \"http://127.0.0.1:{port}\"\nroot = \"/repo/\"\n"
        ),
    );
    full_cycle(&t, "dav");
}

#[test]
fn copy_sends_only_missing_packs_and_reports_a_down_target() {
    let t = TestConfig::new();
    t.add_target("b", "service = \"fs\"\nroot = \"../repo-b\"\n");
    let dead = free_port();
    t.s3_target(
        "c",
        dead,
        "pacs",
        "[limits]\nretries = 1\nretry_base_ms = 10\n",
    );
    let src = sample_tree(&t);
    t.ok(&["repo", "init", "--target", "local"]);
    t.ok(&[
        "backup",
        "files",
        "--target",
        "local",
        src.to_str().unwrap(),
    ]);
    t.ok(&["repo", "init", "--target", "b", "--copy-keys-from", "local"]);
    let (code, out, err) = t.run(&[
        "copy", "--from", "local", "--to", "b", "--to", "c", "--json",
    ]);
    assert_eq!(code, 1, "a target down is a failure: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"], 1);
    assert_eq!(v["targets"][0]["ok"], true);
    assert_eq!(v["targets"][1]["ok"], false);
    assert!(
        v["targets"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"c\""),
        "{out}"
    );
    let first = v["targets"][0]["report"]["bytes_sent"].as_u64().unwrap();
    // A second backup that changes one small file: the copy sends only its pack.
    std::fs::write(src.join("PACS/config/app.ini"), b"[db]\nserver=sql02\n").unwrap();
    t.ok(&[
        "backup",
        "files",
        "--target",
        "local",
        src.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["copy", "--from", "local", "--to", "b", "--json"])).unwrap();
    let r = &v["targets"][0]["report"];
    assert_eq!(r["copied"].as_array().unwrap().len(), 1);
    assert_eq!(r["already_present"], 1);
    assert!(r["bytes_sent"].as_u64().unwrap() < first / 20, "{v}");
    let dest = t.path("from-b");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--target",
        "b",
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(tree_contents(&dest.join("src")), tree_contents(&src));
    t.ok(&["verify", "--target", "b", "--read-data"]);
}

/// A target initialised on its own has other keys: the copy opens each chunk and
/// seals it anew, stores only what the target lacks, and records where each
/// snapshot came from so a second copy sends nothing.
#[test]
fn copy_to_a_repository_with_other_keys_reencrypts() {
    let t = TestConfig::new();
    t.add_target("d", "service = \"fs\"\nroot = \"../repo-d\"\n");
    let src = sample_tree(&t);
    t.ok(&["repo", "init", "--target", "local"]);
    t.ok(&["repo", "init", "--target", "d"]);
    t.ok(&[
        "backup",
        "files",
        "--target",
        "local",
        "--tag",
        "t1",
        src.to_str().unwrap(),
    ]);
    // d already holds a backup of its own of the same tree.
    t.ok(&["backup", "files", "--target", "d", src.to_str().unwrap()]);
    let before = stored_bytes(&t, "d");
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["copy", "--from", "local", "--to", "d", "--json"])).unwrap();
    let r = &v["targets"][0]["report"];
    assert_eq!(r["reencrypted"], true, "{v}");
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "{v}");
    let grown = stored_bytes(&t, "d") - before;
    // Chunks cut with the source's seed are new here (its 20 MiB file is random).
    assert!(grown > 10 << 20, "{grown}");
    // Nothing sealed with the source's key landed in d: its packs open with d's key.
    t.ok(&["verify", "--target", "d", "--read-data"]);
    let snaps: serde_json::Value =
        serde_json::from_str(&t.ok(&["snapshots", "--target", "d", "--json"])).unwrap();
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2, "{snaps}");
    let copied = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.to_string().contains("t1"))
        .expect("the copied snapshot keeps its tags");
    let id = copied["id"].as_str().unwrap();
    let dest = t.path("from-d");
    t.ok(&[
        "restore",
        "files",
        id,
        "--target",
        "d",
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(tree_contents(&dest.join("src")), tree_contents(&src));
    // A second copy finds the snapshot already there and sends nothing.
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["copy", "--from", "local", "--to", "d", "--json"])).unwrap();
    let r = &v["targets"][0]["report"];
    assert_eq!(r["copied"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(r["already_present"], 1);
    assert_eq!(r["bytes_sent"], 0);
    // Copying back: d's own snapshot travels, the copy of local's does not return.
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["copy", "--from", "d", "--to", "local", "--json"])).unwrap();
    let r = &v["targets"][0]["report"];
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(r["already_present"], 1, "{v}");
    let snaps: serde_json::Value =
        serde_json::from_str(&t.ok(&["snapshots", "--target", "local", "--json"])).unwrap();
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2, "{snaps}");
}

#[test]
fn backups_work_on_an_append_only_target() {
    let t = TestConfig::new();
    t.add_target(
        "ao",
        "service = \"fs\"\nroot = \"../repo-ao\"\nappend_only = true\n",
    );
    let src = sample_tree(&t);
    t.ok(&["repo", "init", "--target", "ao"]);
    t.ok(&["backup", "files", "--target", "ao", src.to_str().unwrap()]);
    t.ok(&["backup", "files", "--target", "ao", src.to_str().unwrap()]);
    t.ok(&["verify", "--target", "ao", "--read-data"]);
    t.ok(&["verify", "--target", "ao", "--read-data"]);
    let dest = t.path("r");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--target",
        "ao",
        "--to",
        dest.to_str().unwrap(),
    ]);
    // Removing a key slot needs delete: refused clearly.
    std::fs::write(t.path("p2"), "another passphrase 2").unwrap();
    set_private(&t.path("p2"));
    t.ok(&[
        "repo",
        "key",
        "add",
        "--target",
        "ao",
        "--new-password-file",
        t.path("p2").to_str().unwrap(),
    ]);
    let list = t.ok(&["repo", "key", "list", "--target", "ao", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let other = v
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = t.run(&["repo", "key", "remove", "--target", "ao", &other]);
    assert_eq!(code, 2);
    assert!(err.contains("append-only"), "{err}");
}
