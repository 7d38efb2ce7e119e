//! The alert channels and the formats their receivers document.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use zeroize::Zeroizing;

use super::Alert;
use crate::config::{read_secret_map, ConfigDir, EmailChannel, SmtpTls, MAIN_FILE};
use crate::error::{Error, ErrorKind, Result};

const WECOM_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send";
const DINGTALK_URL: &str = "https://oapi.dingtalk.com/robot/send";

/// One place alerts go.
pub enum Channel {
    /// The alert as JSON, POSTed.
    Webhook {
        /// Name.
        name: String,
        /// Where.
        url: Zeroizing<String>,
    },
    /// A WeCom group robot (`msgtype: text`).
    WeCom {
        /// Name.
        name: String,
        /// The endpoint with `?key=`.
        url: Zeroizing<String>,
        /// Mobiles to mention.
        mention: Vec<String>,
    },
    /// A DingTalk group robot (`msgtype: text`), signed when it has a secret.
    DingTalk {
        /// Name.
        name: String,
        /// The endpoint with `?access_token=`.
        url: Zeroizing<String>,
        /// The signing secret ("加签").
        secret: Option<Zeroizing<String>>,
        /// Mobiles to mention.
        mention: Vec<String>,
    },
    /// E-mail.
    Email {
        /// The settings.
        config: EmailChannel,
        /// The SMTP password.
        password: Option<Zeroizing<String>>,
    },
}

/// A secret from the environment variable `env`, or else key `key` of the secrets
/// file; `None` when neither is named. One named but empty or absent is an error.
fn secret(
    cfg: &ConfigDir,
    channel: &str,
    env: Option<&str>,
    file: Option<&PathBuf>,
    key: &str,
) -> Result<Option<Zeroizing<String>>> {
    let where_ = |k: &str| {
        Error::new(
            ErrorKind::Config,
            format!(
                "{}: alert channel {channel:?}: {k}",
                cfg.dir.join(MAIN_FILE).display()
            ),
        )
        .with("file", cfg.dir.join(MAIN_FILE).display())
    };
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Zeroizing::new(v))),
            _ => Err(where_(&format!(
                "environment variable {var} is not set: set it in the service's environment"
            ))),
        };
    }
    if let Some(f) = file {
        let path = if f.is_absolute() {
            f.clone()
        } else {
            cfg.dir.join(f)
        };
        let map = read_secret_map(&path)?;
        return match map.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None => Err(where_(&format!(
                "secrets file {} has no `{key}=` line",
                path.display()
            ))),
        };
    }
    Ok(None)
}

/// Every channel of `[alerts]`, secrets resolved.
pub(super) fn from_config(cfg: &ConfigDir) -> Result<Vec<Channel>> {
    let a = &cfg.main.alerts;
    let mut out = Vec::new();
    for w in &a.webhook {
        let url = match (
            &w.url,
            secret(cfg, &w.name, w.url_env.as_deref(), None, "url")?,
        ) {
            (_, Some(u)) => u,
            (Some(u), None) => Zeroizing::new(u.clone()),
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("alert webhook {:?} has neither `url` nor `url_env`", w.name),
                )
                .with("file", cfg.dir.join(MAIN_FILE).display()))
            }
        };
        out.push(Channel::Webhook {
            name: w.name.clone(),
            url,
        });
    }
    let robot_key = |r: &crate::config::RobotChannel| -> Result<Zeroizing<String>> {
        secret(cfg, &r.name, r.key_env.as_deref(), r.secrets_file.as_ref(), "key")?.ok_or_else(
            || {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "alert robot {:?}: its key is a secret: name `key_env` or a `secrets_file` with `key=`",
                        r.name
                    ),
                )
                .with("file", cfg.dir.join(MAIN_FILE).display())
            },
        )
    };
    for r in &a.wecom {
        let key = robot_key(r)?;
        let base = r.url.as_deref().unwrap_or(WECOM_URL);
        out.push(Channel::WeCom {
            name: r.name.clone(),
            url: Zeroizing::new(format!("{base}?key={}", key.as_str())),
            mention: r.mention.clone(),
        });
    }
    for r in &a.dingtalk {
        let token = robot_key(r)?;
        let base = r.url.as_deref().unwrap_or(DINGTALK_URL);
        let secret = match (&r.secret_env, &r.secrets_file) {
            (Some(env), _) => secret(cfg, &r.name, Some(env), None, "secret")?,
            (None, Some(_)) => secret(cfg, &r.name, None, r.secrets_file.as_ref(), "secret")?,
            (None, None) => None,
        };
        out.push(Channel::DingTalk {
            name: r.name.clone(),
            url: Zeroizing::new(format!("{base}?access_token={}", token.as_str())),
            secret,
            mention: r.mention.clone(),
        });
    }
    for e in &a.email {
        let password = secret(
            cfg,
            &e.name,
            e.password_env.as_deref(),
            e.secrets_file.as_ref(),
            "password",
        )?;
        out.push(Channel::Email {
            config: e.clone(),
            password,
        });
    }
    Ok(out)
}

/// DingTalk's signature of a request made at `timestamp_ms`: base64 of
/// HMAC-SHA256 over "timestamp\nsecret" keyed with the secret, URL-encoded.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    b64.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Channel {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Channel::Webhook { name, .. }
            | Channel::WeCom { name, .. }
            | Channel::DingTalk { name, .. } => name,
            Channel::Email { config, .. } => &config.name,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::WeCom { .. } => "wecom",
            Channel::DingTalk { .. } => "dingtalk",
            Channel::Email { .. } => "email",
        }
    }

    /// Sends once. The error says why, without the URL (it holds the robot's key).
    pub async fn send(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
    ) -> std::result::Result<(), String> {
        match self {
            Channel::Webhook { url, .. } => {
                let body = serde_json::to_vec(alert).map_err(|e| e.to_string())?;
                post(http, url, body, false).await
            }
            Channel::WeCom { url, mention, .. } => {
                let body = json!({
                    "msgtype": "text",
                    "text": { "content": alert.plain(), "mentioned_mobile_list": mention },
                });
                post(http, url, body.to_string().into_bytes(), true).await
            }
            Channel::DingTalk {
                url,
                secret,
                mention,
                ..
            } => {
                let body = json!({
                    "msgtype": "text",
                    "text": { "content": alert.plain() },
                    "at": { "atMobiles": mention, "isAtAll": false },
                });
                let url = match secret {
                    Some(s) => {
                        let ts = (time::OffsetDateTime::now_utc().unix_timestamp_nanos()
                            / 1_000_000) as i64;
                        Zeroizing::new(format!(
                            "{}&timestamp={ts}&sign={}",
                            url.as_str(),
                            dingtalk_sign(s, ts)
                        ))
                    }
                    None => url.clone(),
                };
                post(http, &url, body.to_string().into_bytes(), true).await
            }
            Channel::Email { config, password } => {
                send_email(config, password.as_ref().map(|p| p.as_str()), alert).await
            }
        }
    }
}

/// POSTs JSON; `errcode` in the answer must be 0 for the robots.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    robot: bool,
) -> std::result::Result<(), String> {
    let resp = http
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the receiver: {}", e.without_url()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "the receiver answered HTTP {status}: {}",
            short(&text)
        ));
    }
    if robot {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| format!("the robot's answer is not JSON: {}", short(&text)))?;
        let code = v.get("errcode").and_then(|c| c.as_i64()).unwrap_or(-1);
        if code != 0 {
            return Err(format!(
                "the robot refused the message: errcode {code}: {}",
                v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")
            ));
        }
    }
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn send_email(
    c: &EmailChannel,
    password: Option<&str>,
    alert: &Alert,
) -> std::result::Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let mut msg = Message::builder()
        .from(
            c.from
                .parse()
                .map_err(|e| format!("sender {:?}: {e}", c.from))?,
        )
        .subject(format!(
            "[pacsbak {}] {}",
            alert.severity.label(),
            alert.title
        ))
        .header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        msg = msg.to(to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?);
    }
    let msg = msg.body(alert.plain()).map_err(|e| e.to_string())?;
    let builder = match c.tls {
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.server)
            .map_err(|e| e.to_string())?
            .port(c.port.unwrap_or(465)),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.server)
            .map_err(|e| e.to_string())?
            .port(c.port.unwrap_or(587)),
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.server)
            .port(c.port.unwrap_or(25)),
    };
    let builder = builder.timeout(Some(Duration::from_secs(30)));
    let builder = match (&c.username, password) {
        (Some(u), Some(p)) => builder.credentials(Credentials::new(u.clone(), p.to_string())),
        _ => builder,
    };
    builder
        .build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP {}:{}: {e}", c.server, c.port.unwrap_or(0)))
}
